// upfirdn2d row kernels, compiled once per ISA (included by upfirdn2d.cpp inside namespace
// fastgan_cpu::FG_ISA_NS; no include guard on purpose, no includes: see common.h).
//
// Both kernels are direct polyphase filters: for output row oy only the filter rows that meet a
// real (not zero-inserted) input row are visited, and along x each output phase is a plain FIR
// over the input row with stride s = down/gcd(up, down). The input row is copied once into a
// zero-margined buffer (so padding and cropping need no bounds checks) and, for s > 1, split
// into s sub-rows so that every tap reads contiguous memory. A separable (or rank-1) filter first
// combines the filter's input rows into that buffer (vertical pass), then runs one FIR per phase.

namespace fastgan_cpu {
namespace FG_ISA_NS {

#include "simd_ops.h"

// Filter rows of output row oy that meet input rows inside the image: jy[v], iy[v] for v < count.
static inline int64_t upf_vertical_taps(const UpfPlan& p, int64_t oy, int64_t* jy, int64_t* iy) {
  const int64_t k0 = oy * p.downy - p.py0;
  const int64_t j0 = ((-k0) % p.upy + p.upy) % p.upy;
  int64_t i = (k0 + j0) / p.upy, n = 0;
  for (int64_t j = j0; j < p.fh; j += p.upy, ++i) {
    if (i >= 0 && i < p.H) {
      jy[n] = j;
      iy[n] = i;
      ++n;
    }
  }
  return n;
}

// One FIR pass along x for every output phase: phase ph writes M[ph] outputs into dst(ph).
// `wtab` holds [P][Tmax] weights; the input is `buf` (s == 1) or its sub-rows (s > 1).
template <class A, class DstFn>
static inline void upf_xpass(const UpfPlan& p, const A* wtab, const A* rows, int64_t SL, bool acc, const A** ptrs,
                             DstFn dst) {
  for (int64_t ph = 0; ph < p.P; ++ph) {
    const int64_t T = p.phT[ph];
    for (int64_t t = 0; t < T; ++t) {
      const int64_t pos = p.phPos[ph * p.Tmax + t];
      ptrs[t] = rows + (pos % p.s) * SL + pos / p.s;
    }
    combine(dst(ph), ptrs, wtab + ph * p.Tmax, T, p.phM[ph], acc);
  }
}

// Contiguous NCHW: items are (plane, block of output rows).
template <class T>
void upf_nchw(const UpfPlan& p, const T* x, T* y, int64_t ib, int64_t ie, char* scratch) {
  using A = acc_t<T>;
  A* buf = reinterpret_cast<A*>(scratch + p.off_buf);
  A* subs = p.s > 1 ? reinterpret_cast<A*>(scratch + p.off_sub) : buf;
  A* phrows = reinterpret_cast<A*>(scratch + p.off_rows);
  A* wv = reinterpret_cast<A*>(scratch + p.off_w);
  const T** xs = reinterpret_cast<const T**>(scratch + p.off_ptr_in);
  const A** as = reinterpret_cast<const A**>(scratch + p.off_ptr_acc);
  int64_t* jy = reinterpret_cast<int64_t*>(scratch + p.off_idx);
  int64_t* iy = jy + p.fh;
  const A* wy = static_cast<const A*>(p.wy);
  const A* wx = static_cast<const A*>(p.wx);
  const int64_t SL = (p.L + p.s - 1) / p.s;
  const int64_t Mst = (p.OW + p.P - 1) / p.P;  // stride between phase rows
  const int64_t nx = p.b - p.a, xoff = p.a - p.lo;
  fill_zero<A, A>(buf, p.L);
  const bool direct = p.P == 1 && std::is_same<T, A>::value;

  for (int64_t item = ib; item < ie; ++item) {
    const int64_t plane = item / p.items_per_plane;
    const int64_t oy0 = (item % p.items_per_plane) * p.rows_per_item;
    const int64_t oy1 = oy0 + p.rows_per_item < p.OH ? oy0 + p.rows_per_item : p.OH;
    const T* xp = x + plane * p.H * p.W;
    T* yp = y + plane * p.OH * p.OW;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      T* yrow = yp + oy * p.OW;
      A* yacc = reinterpret_cast<A*>(yrow);  // only dereferenced when direct (T == A)
      auto dst = [&](int64_t ph) { return direct ? yacc : phrows + ph * Mst; };
      const int64_t nv = upf_vertical_taps(p, oy, jy, iy);
      if (nv == 0 || nx <= 0) {
        fill_zero<T, A>(yrow, p.OW);
        continue;
      }
      if (p.separable) {
        for (int64_t v = 0; v < nv; ++v) {
          xs[v] = xp + iy[v] * p.W + p.a;
          wv[v] = wy[jy[v]];
        }
        combine(buf + xoff, xs, wv, nv, nx, false);
        if (p.s > 1) deinterleave(buf, p.L, p.s, subs, SL);
        upf_xpass(p, wx, subs, SL, false, as, dst);
      } else {
        for (int64_t v = 0; v < nv; ++v) {
          convert_row(buf + xoff, xp + iy[v] * p.W + p.a, nx);
          if (p.s > 1) deinterleave(buf, p.L, p.s, subs, SL);
          upf_xpass(p, wx + jy[v] * p.P * p.Tmax, subs, SL, v > 0, as, dst);
        }
      }
      if (!direct) interleave(yrow, phrows, p.P, Mst, p.OW);
    }
  }
}

// Contiguous channels_last (NHWC): items are (n, output row, channel block); SIMD runs over channels.
template <class T>
void upf_nhwc(const UpfPlan& p, const T* x, T* y, int64_t ib, int64_t ie, char* scratch) {
  using A = acc_t<T>;
  const int64_t C = p.C, CB = p.CB, L = p.L;
  A* tmp = reinterpret_cast<A*>(scratch + p.off_buf);  // [rows][L][CB], zero outside columns [a, b)
  A* ctmp = reinterpret_cast<A*>(scratch + p.off_rows);
  A* wk = reinterpret_cast<A*>(scratch + p.off_w);
  const T** xs = reinterpret_cast<const T**>(scratch + p.off_ptr_in);
  const A** as = reinterpret_cast<const A**>(scratch + p.off_ptr_acc);
  int64_t* jy = reinterpret_cast<int64_t*>(scratch + p.off_idx);
  int64_t* iy = jy + p.fh;
  const A* wy = static_cast<const A*>(p.wy);
  const A* wx = static_cast<const A*>(p.wx);
  const int64_t nx = p.b - p.a, xoff = p.a - p.lo;
  fill_zero<A, A>(tmp, (p.separable ? 1 : p.Vmax) * L * CB);

  for (int64_t item = ib; item < ie; ++item) {
    const int64_t c0 = (item % p.ncb) * CB;
    const int64_t cn = C - c0 < CB ? C - c0 : CB;
    const int64_t oy = (item / p.ncb) % p.OH;
    const int64_t n = item / p.ncb / p.OH;
    T* yrow = y + (n * p.OH + oy) * p.OW * C + c0;
    const int64_t nv = upf_vertical_taps(p, oy, jy, iy);
    if (nv == 0 || nx <= 0) {
      for (int64_t ox = 0; ox < p.OW; ++ox) fill_zero<T, A>(yrow + ox * C, cn);
      continue;
    }
    const T* xn = x + n * p.H * p.W * C + c0;
    if (p.separable) {
      for (int64_t v = 0; v < nv; ++v) wk[v] = wy[jy[v]];
      if (cn == C) {
        for (int64_t v = 0; v < nv; ++v) xs[v] = xn + (iy[v] * p.W + p.a) * C;
        combine(tmp + xoff * CB, xs, static_cast<const A*>(wk), nv, nx * C, false);
      } else {
        for (int64_t ix = 0; ix < nx; ++ix) {
          for (int64_t v = 0; v < nv; ++v) xs[v] = xn + (iy[v] * p.W + p.a + ix) * C;
          combine(tmp + (xoff + ix) * CB, xs, static_cast<const A*>(wk), nv, cn, false);
        }
      }
    } else {
      for (int64_t v = 0; v < nv; ++v) {
        A* rows = tmp + v * L * CB;
        if (cn == C) {
          convert_row(rows + xoff * CB, xn + (iy[v] * p.W + p.a) * C, nx * C);
        } else {
          for (int64_t ix = 0; ix < nx; ++ix)
            convert_row(rows + (xoff + ix) * CB, xn + (iy[v] * p.W + p.a + ix) * C, cn);
        }
      }
    }
    for (int64_t ox = 0; ox < p.OW; ++ox) {
      const int64_t ph = ox % p.P, m = ox / p.P, T_ = p.phT[ph];
      const int64_t* pos = p.phPos + ph * p.Tmax;
      int64_t K = 0;
      const A* w = wx + ph * p.Tmax;
      if (p.separable) {
        for (int64_t t = 0; t < T_; ++t) as[K++] = tmp + (pos[t] + p.s * m) * CB;
      } else {
        for (int64_t v = 0; v < nv; ++v) {
          const A* wrow = wx + (jy[v] * p.P + ph) * p.Tmax;
          for (int64_t t = 0; t < T_; ++t) {
            as[K] = tmp + v * L * CB + (pos[t] + p.s * m) * CB;
            wk[K++] = wrow[t];
          }
        }
        w = wk;
      }
      combine_to(yrow + ox * C, as, w, K, cn, ctmp);
    }
  }
}

}  // namespace FG_ISA_NS
}  // namespace fastgan_cpu
