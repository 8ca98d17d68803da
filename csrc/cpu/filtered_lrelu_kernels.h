// filtered_lrelu tile kernel, compiled once per ISA (included by filtered_lrelu.cpp inside namespace
// fastgan_cpu::FG_ISA_NS; no include guard on purpose, no includes, no out-of-line std:: calls: see
// common.h).
//
// One work item is a band of output rows of one (n, c) plane. It computes only the intermediate
// (upsampled, filtered) rows that band needs, into per-thread row buffers:
//
//   input rows  --(+bias, zero margins)-->  Xbuf
//   stage 1     u = up-FIR of Xbuf          separable: x pass per input row (Hbuf), then y pass;
//                                           2-D: one polyphase pass over all filter rows
//   activation  a = act(u) or masked u      writes / reads 2-bit signs
//   stage 2     y = down-FIR of a           separable: x pass per row (Dbuf), then y pass into y;
//                                           2-D: one pass over all filter rows into y
//
// Every FIR pass is fir_rows(): out[m] = sum_k w[k] * src[k][m], accumulated over all taps in
// registers. Rows are laid out so that src[k] is contiguous in m: x upsampling is split into
// output phases (interleaved afterwards), x downsampling reads phase-split (deinterleaved) rows.

namespace fastgan_cpu {
namespace FG_ISA_NS {

static inline int64_t flr_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t flr_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t flr_floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int64_t flr_mod(int64_t a, int64_t b) { return ((a % b) + b) % b; }

// 32-byte vectors through GCC vector extensions: one ymm register per vector in the AVX2/AVX-512
// builds, two SSE registers in the baseline build. Loads and stores go through the unaligned type.
template <class T> struct FlrVec;
template <> struct FlrVec<float> {
  typedef float V __attribute__((vector_size(32)));
  typedef float VU __attribute__((vector_size(32), aligned(4), may_alias));
  static constexpr int L = 8;
};
template <> struct FlrVec<double> {
  typedef double V __attribute__((vector_size(32)));
  typedef double VU __attribute__((vector_size(32), aligned(8), may_alias));
  static constexpr int L = 4;
};

// out[m] = sum_{k<K} w[k] * src[k][m] for m < n, all taps accumulated in registers (4 vectors per
// block, then single vectors). Reads src[k][0 .. round_up(n, 8)).
template <class T>
static inline void fir_rows(T* __restrict__ out, const T* const* src, const T* w, int64_t K, int64_t n) {
  typedef typename FlrVec<T>::V V;
  typedef typename FlrVec<T>::VU VU;
  constexpr int L = FlrVec<T>::L;
  int64_t m = 0;
  for (; m + 4 * L <= n; m += 4 * L) {
    V a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t k = 0; k < K; ++k) {
      const T* s = src[k] + m;
      const V wk = V{} + w[k];
      a0 += wk * *reinterpret_cast<const VU*>(s);
      a1 += wk * *reinterpret_cast<const VU*>(s + L);
      a2 += wk * *reinterpret_cast<const VU*>(s + 2 * L);
      a3 += wk * *reinterpret_cast<const VU*>(s + 3 * L);
    }
    *reinterpret_cast<VU*>(out + m) = a0;
    *reinterpret_cast<VU*>(out + m + L) = a1;
    *reinterpret_cast<VU*>(out + m + 2 * L) = a2;
    *reinterpret_cast<VU*>(out + m + 3 * L) = a3;
  }
  for (; m < n; m += L) {
    V a0 = {};
    for (int64_t k = 0; k < K; ++k) a0 += (V{} + w[k]) * *reinterpret_cast<const VU*>(src[k] + m);
    if (n - m >= L) {
      *reinterpret_cast<VU*>(out + m) = a0;
    } else {
      for (int64_t t = 0; t < n - m; ++t) out[m + t] = a0[t];
    }
  }
}

// dst[phJ[ph] + up*m] = tmp[ph * WmR + m] for every phase: the x-upsampled row from its phases.
// Factor 2 (the StyleGAN3 case) is one paired loop the compiler vectorises with shuffles.
template <class T>
static inline void flr_interleave(const FlrPlan& p, const T* __restrict__ tmp, T* __restrict__ dst) {
  if (p.up == 2) {
    const int64_t e = p.phJ[0] == 0 ? 0 : 1, o = 1 - e;  // phases landing on even / odd columns
    const T* __restrict__ te = tmp + e * p.WmR;
    const T* __restrict__ to = tmp + o * p.WmR;
    const int64_t Me = p.phM[e], Mo = p.phM[o], both = Me < Mo ? Me : Mo;
    for (int64_t m = 0; m < both; ++m) {
      dst[2 * m] = te[m];
      dst[2 * m + 1] = to[m];
    }
    if (Me > both) dst[2 * both] = te[both];
    return;
  }
  for (int64_t ph = 0; ph < p.up; ++ph) {
    const T* __restrict__ t = tmp + ph * p.WmR;
    for (int64_t m = 0, j = p.phJ[ph]; m < p.phM[ph]; ++m, j += p.up) dst[j] = t[m];
  }
}

struct FlrBuffers {
  char* base;
  template <class U> U* at(size_t off) const { return reinterpret_cast<U*>(base + off); }
};

// Stage-1 row: u[j] for j < Wm from the input rows in Xbuf (row r at Xbuf + (r - r0) * XL).
// Separable plans pass the already x-filtered rows (Hbuf) and only do the y pass here.
template <class T>
static inline void flr_stage1_row(const FlrPlan& p, int64_t i, int64_t r0, const T* Xbuf, const T* Hbuf, T* urow,
                                  T* tmp, const T** ptrs, T* w) {
  const T* f1 = static_cast<const T*>(p.f1);
  const int64_t a0 = flr_mod(p.p1y0 - i, p.up), rfirst = (i + a0 - p.p1y0) / p.up;  // exact division
  if (p.sep1) {
    int64_t K = 0;
    for (int64_t a = a0, r = rfirst; a < p.f1h; a += p.up, ++r) {
      if (r < 0 || r >= p.H) continue;
      ptrs[K] = Hbuf + (r - r0) * p.WmR;
      w[K] = f1[a];
      ++K;
    }
    fir_rows(urow, ptrs, w, K, p.Wm);
    return;
  }
  for (int64_t ph = 0; ph < p.up; ++ph) {
    const int64_t M = p.phM[ph], Kp = p.phK[ph];
    if (M == 0) continue;
    int64_t K = 0;
    for (int64_t a = a0, r = rfirst; a < p.f1h && Kp > 0; a += p.up, ++r) {
      if (r < 0 || r >= p.H) continue;
      const T* row = Xbuf + (r - r0) * p.XL + p.XL0 + p.phBase[ph];
      for (int64_t k = 0; k < Kp; ++k) {
        ptrs[K] = row + k;
        w[K] = f1[a * p.f1w + p.phC[ph] + p.up * k];
        ++K;
      }
    }
    fir_rows(p.up == 1 ? urow : tmp + ph * p.WmR, ptrs, w, K, M);
  }
  if (p.up > 1) flr_interleave(p, tmp, urow);
}

// x pass of separable stage 1 for one padded input row xp: dst[j] for j < Wm.
template <class T>
static inline void flr_xup(const FlrPlan& p, const T* xp, T* dst, T* tmp, const T** ptrs, T* w) {
  const T* f1 = static_cast<const T*>(p.f1);
  for (int64_t ph = 0; ph < p.up; ++ph) {
    const int64_t M = p.phM[ph], K = p.phK[ph];
    if (M == 0) continue;
    for (int64_t k = 0; k < K; ++k) {
      ptrs[k] = xp + p.XL0 + p.phBase[ph] + k;
      w[k] = f1[p.phC[ph] + p.up * k];
    }
    fir_rows(p.up == 1 ? dst : tmp + ph * p.WmR, ptrs, w, K, M);
  }
  if (p.up > 1) flr_interleave(p, tmp, dst);
}

// Activation of one intermediate row: a[j] = act(u[j]), or u[j] times the stored sign mask.
template <class T>
static inline void flr_act_row(const FlrPlan& p, const T* __restrict__ u, T* __restrict__ a,
                               const uint8_t* __restrict__ sgrow) {
  const T G = T(p.gain), sl = T(p.slope);
  const int64_t n = p.Wm;
  if (sgrow) {
    const T mul[4] = {G, G * sl, T(0), T(0)};
    const int64_t full = n / 4;
    for (int64_t q = 0; q < full; ++q) {  // one sign byte per step
      const unsigned b = sgrow[q];
      const T* __restrict__ uq = u + 4 * q;
      T* __restrict__ aq = a + 4 * q;
      aq[0] = uq[0] * mul[b & 3];
      aq[1] = uq[1] * mul[(b >> 2) & 3];
      aq[2] = uq[2] * mul[(b >> 4) & 3];
      aq[3] = uq[3] * mul[b >> 6];
    }
    for (int64_t j = 4 * full; j < n; ++j) a[j] = u[j] * mul[(sgrow[j >> 2] >> ((j & 3) * 2)) & 3];
    return;
  }
  const T Gs = G * sl;
  if (p.clamp >= 0) {
    const T cl = T(p.clamp);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const T v = u[j];
      T s = v * (v > T(0) ? G : Gs);
      s = s > cl ? cl : s;
      a[j] = s < -cl ? -cl : s;
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const T v = u[j];
      a[j] = v * (v > T(0) ? G : Gs);
    }
  }
}

// Signs of one row, 4 values per byte: bit 0 where u <= 0, bit 1 where the activation was clamped.
// The codes are computed in a vectorised pass into `codes` (>= 4 * Ws ints), then packed.
template <class T>
static inline void flr_pack_signs(const FlrPlan& p, const T* __restrict__ u, int32_t* __restrict__ codes,
                                  uint8_t* __restrict__ out) {
  const T G = T(p.gain), Gs = G * T(p.slope), cl = T(p.clamp);
  const int64_t n = p.Wm;
  if (p.clamp >= 0) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const T v = u[j];
      const T s = v * (v > T(0) ? G : Gs);
      codes[j] = (v > T(0) ? 0 : 1) | ((s > cl || s < -cl) ? 2 : 0);
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) codes[j] = u[j] > T(0) ? 0 : 1;
  }
  for (int64_t j = n; j < 4 * p.Ws; ++j) codes[j] = 0;
  for (int64_t q = 0; q < p.Ws; ++q) {
    const int32_t* c = codes + 4 * q;
    out[q] = static_cast<uint8_t>(c[0] | (c[1] << 2) | (c[2] << 4) | (c[3] << 6));
  }
}

// Output rows [o0, o1) of one plane.
template <class T>
static inline void flr_band(const FlrPlan& p, const T* x, T bias, T* y, const uint8_t* sg_in, uint8_t* sg_out,
                            int64_t o0, int64_t o1, bool first, bool last, const FlrBuffers& buf) {
  const int64_t i0 = flr_max(0, o0 * p.down - p.p2y0);
  const int64_t i1 = flr_min(p.Hm, (o1 - 1) * p.down - p.p2y0 + p.f2h);
  if (i0 >= i1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t q = 0; q < p.Wo; ++q) y[o * p.Wo + q] = T(0);
    return;
  }
  T* Xbuf = buf.at<T>(p.off_x);
  T* Hbuf = buf.at<T>(p.off_h);
  T* urow = buf.at<T>(p.off_u);
  T* tmp = buf.at<T>(p.off_tmp);
  T* Abuf = buf.at<T>(p.off_a);
  T* apad = buf.at<T>(p.off_apad);
  T* Dbuf = buf.at<T>(p.off_d);
  T* w = buf.at<T>(p.off_w);
  const T** ptrs = buf.at<const T*>(p.off_ptr);
  int32_t* codes = buf.at<int32_t>(p.off_codes);

  // Input rows of the band, with bias and zero margins; x pass for separable stage 1.
  const int64_t r0 = flr_max(0, -flr_floordiv(-(i0 - p.p1y0), p.up));
  const int64_t r1 = flr_min(p.H, flr_floordiv(i1 - 1 + p.f1h - 1 - p.p1y0, p.up) + 1);
  for (int64_t r = r0; r < r1; ++r) {
    T* xp = Xbuf + (r - r0) * p.XL;
    const T* src = x + r * p.W;
    for (int64_t s = 0; s < p.XL0; ++s) xp[s] = T(0);
#pragma omp simd
    for (int64_t s = 0; s < p.W; ++s) xp[p.XL0 + s] = src[s] + bias;
    for (int64_t s = p.XL0 + p.W; s < p.XL; ++s) xp[s] = T(0);
    if (p.sep1) flr_xup(p, xp, Hbuf + (r - r0) * p.WmR, tmp, ptrs, w);
  }

  // Intermediate rows: stage 1, activation, x pass of stage 2.
  const int64_t own0 = first ? 0 : flr_max(0, o0 * p.down - p.p2y0);
  const int64_t own1 = last ? p.Hm : flr_max(0, o1 * p.down - p.p2y0);
  const T* f2 = static_cast<const T*>(p.f2);
  for (int64_t i = i0; i < i1; ++i) {
    flr_stage1_row(p, i, r0, Xbuf, Hbuf, urow, tmp, ptrs, w);
    T* arow = Abuf + (i - i0) * p.AR;
    T* dst = p.down == 1 ? arow : apad;
    for (int64_t s = 0; s < p.AL0; ++s) dst[s] = T(0);
    for (int64_t s = p.AL0 + p.Wm; s < p.APL; ++s) dst[s] = T(0);
    flr_act_row(p, urow, dst + p.AL0, sg_in ? sg_in + i * p.Ws : nullptr);
    if (sg_out && i >= own0 && i < own1) flr_pack_signs(p, urow, codes, sg_out + i * p.Ws);
    if (p.down == 2) {  // paired loop: vectorised with shuffles
      T* __restrict__ s0 = arow;
      T* __restrict__ s1 = arow + p.SL;
      for (int64_t q = 0; q < p.SL; ++q) {
        s0[q] = apad[2 * q];
        s1[q] = apad[2 * q + 1];
      }
    } else if (p.down > 2) {
      for (int64_t ph = 0; ph < p.down; ++ph) {
        T* sub = arow + ph * p.SL;
        for (int64_t q = 0, s = ph; q < p.SL; ++q, s += p.down) sub[q] = apad[s];
      }
    }
    if (p.sep2) {
      for (int64_t c = 0; c < p.f2w; ++c) {
        ptrs[c] = arow + p.tap2[c];
        w[c] = f2[c];
      }
      fir_rows(Dbuf + (i - i0) * p.WoR, ptrs, w, p.f2w, p.Wo);
    }
  }

  // y pass of stage 2 straight into the output rows.
  for (int64_t o = o0; o < o1; ++o) {
    int64_t K = 0;
    for (int64_t a = 0; a < p.f2h; ++a) {
      const int64_t i = o * p.down + a - p.p2y0;
      if (i < i0 || i >= i1) continue;
      if (p.sep2) {
        ptrs[K] = Dbuf + (i - i0) * p.WoR;
        w[K] = f2[a];
        ++K;
        continue;
      }
      const T* arow = Abuf + (i - i0) * p.AR;
      for (int64_t c = 0; c < p.f2w; ++c) {
        ptrs[K] = arow + p.tap2[c];
        w[K] = f2[a * p.f2w + c];
        ++K;
      }
    }
    fir_rows(y + o * p.Wo, ptrs, w, K, p.Wo);
  }
}

// Work items [b, e): item = plane * bands + band.
template <class T>
static void flr_items(const FlrPlan& p, const T* x, const T* bias, T* y, const uint8_t* sg_in, uint8_t* sg_out,
                      int64_t b, int64_t e, char* scratch) {
  const FlrBuffers buf{scratch};
  const int64_t plane_in = p.H * p.W, plane_out = p.Ho * p.Wo, plane_sg = p.Hm * p.Ws;
  for (int64_t item = b; item < e; ++item) {
    const int64_t pl = item / p.bands, band = item % p.bands;
    const int64_t o0 = band * p.band_rows, o1 = flr_min(p.Ho, o0 + p.band_rows);
    const T bv = bias ? bias[pl % p.C] : T(0);
    flr_band<T>(p, x + pl * plane_in, bv, y + pl * plane_out, sg_in ? sg_in + pl * plane_sg : nullptr,
                sg_out ? sg_out + pl * plane_sg : nullptr, o0, o1, band == 0, band == p.bands - 1, buf);
  }
}

}  // namespace FG_ISA_NS
}  // namespace fastgan_cpu
