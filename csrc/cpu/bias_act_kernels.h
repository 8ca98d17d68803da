// bias_act element kernels, compiled once per ISA (included by bias_act.cpp inside namespace
// fastgan_cpu::FG_ISA_NS; no include guard on purpose, no includes: see common.h).
//
// The tensor is walked in memory order as [outer, C, inner] (inner = stride of the bias dim):
// with inner > 1 each run of `inner` elements shares one bias value (contiguous NCHW), with
// inner == 1 a run is the bias vector itself (channels_last). Every pass is one loop over x.

namespace fastgan_cpu {
namespace FG_ISA_NS {

#include "simd_ops.h"

// exp for float in plain arithmetic so the loops vectorise (libm's expf is an opaque call):
// exp(x) = 2^n * exp(r), |r| <= ln2/2, degree-6 Taylor polynomial, about 1-2 ulp. Results
// saturate to +inf above 88.72 and to 0 below -87.34 (no denormals); 88 < x <= 88.72 gives exp(88),
// which only ever feeds 1/(1+exp) terms that round to 0 anyway.
static FG_INLINE float fexp(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float q = 1.0f / 720;
  q = q * r + 1.0f / 120;
  q = q * r + 1.0f / 24;
  q = q * r + 1.0f / 6;
  q = q * r + 0.5f;
  q = q * r + 1.0f;
  q = q * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  float y = q * scale;
  y = x > 88.7228f ? __builtin_inff() : y;
  y = x < -87.3365f ? 0.0f : y;
  return x != x ? x : y;
}
static FG_INLINE double fexp(double v) { return __builtin_exp(v); }
static FG_INLINE float fexpm1(float v) { return __builtin_expm1f(v); }
static FG_INLINE double fexpm1(double v) { return __builtin_expm1(v); }
static FG_INLINE float ftanh(float v) { return __builtin_tanhf(v); }
static FG_INLINE double ftanh(double v) { return __builtin_tanh(v); }
static FG_INLINE float flog1p(float v) { return __builtin_log1pf(v); }
static FG_INLINE double flog1p(double v) { return __builtin_log1p(v); }

// Activation value, first and second derivative, following torch autograd of the ref ops.
template <int ACT, class A> struct Act;
template <class A> struct Act<0, A> {  // linear
  static FG_INLINE A f(A z, A) { return z; }
  static FG_INLINE A d(A, A, A) { return A(1); }
  static FG_INLINE A dd(A, A) { return A(0); }
};
template <class A> struct Act<1, A> {  // relu
  static FG_INLINE A f(A z, A) { return z < A(0) ? A(0) : z; }        // NaN stays NaN, like torch
  static FG_INLINE A d(A z, A, A) { return z <= A(0) ? A(0) : A(1); }  // threshold_backward on the result
  static FG_INLINE A dd(A, A) { return A(0); }
};
template <class A> struct Act<2, A> {  // lrelu
  static FG_INLINE A f(A z, A alpha) { return z > A(0) ? z : z * alpha; }
  static FG_INLINE A d(A z, A, A alpha) { return z > A(0) ? A(1) : alpha; }
  static FG_INLINE A dd(A, A) { return A(0); }
};
template <class A> struct Act<3, A> {  // tanh
  static FG_INLINE A f(A z, A) { return ftanh(z); }
  static FG_INLINE A d(A, A y, A) { return A(1) - y * y; }
  static FG_INLINE A dd(A z, A) {
    A y = ftanh(z);
    return A(-2) * y * (A(1) - y * y);
  }
};
template <class A> static FG_INLINE A sigm(A z) { return A(1) / (A(1) + fexp(-z)); }
template <class A> struct Act<4, A> {  // sigmoid
  static FG_INLINE A f(A z, A) { return sigm(z); }
  static FG_INLINE A d(A, A y, A) { return y * (A(1) - y); }
  static FG_INLINE A dd(A z, A) {
    A s = sigm(z);
    return s * (A(1) - s) * (A(1) - A(2) * s);
  }
};
template <class A> struct Act<5, A> {  // elu (alpha 1); z <= 0 takes the exponential branch
  static FG_INLINE A f(A z, A) { return z <= A(0) ? fexpm1(z) : z; }
  static FG_INLINE A d(A z, A, A) { return z <= A(0) ? fexp(z) : A(1); }
  static FG_INLINE A dd(A z, A) { return z <= A(0) ? fexp(z) : A(0); }
};
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
template <class A> struct Act<6, A> {  // selu
  static FG_INLINE A f(A z, A) { return z <= A(0) ? A(kSeluScale * kSeluAlpha) * fexpm1(z) : A(kSeluScale) * z; }
  static FG_INLINE A d(A z, A, A) { return z <= A(0) ? A(kSeluScale * kSeluAlpha) * fexp(z) : A(kSeluScale); }
  static FG_INLINE A dd(A z, A) { return z <= A(0) ? A(kSeluScale * kSeluAlpha) * fexp(z) : A(0); }
};
template <class A> struct Act<7, A> {  // softplus (beta 1, threshold 20)
  static FG_INLINE A f(A z, A) { return z > A(20) ? z : flog1p(fexp(z)); }
  static FG_INLINE A d(A z, A, A) {
    A e = fexp(z);
    return z > A(20) ? A(1) : e / (e + A(1));
  }
  static FG_INLINE A dd(A z, A) {
    A s = sigm(z);
    return z < A(20) ? s * (A(1) - s) : A(0);
  }
};
template <class A> struct Act<8, A> {  // swish: z * sigmoid(z)
  static FG_INLINE A f(A z, A) { return z * sigm(z); }
  static FG_INLINE A d(A z, A, A) {
    A s = sigm(z);
    return s + z * s * (A(1) - s);
  }
  static FG_INLINE A dd(A z, A) {
    A s = sigm(z);
    return s * (A(1) - s) * (A(2) + z * (A(1) - A(2) * s));
  }
};

template <class A> static inline A clamp_val(A v, A c) { return v > c ? c : (v < -c ? -c : v); }
template <class A> static inline bool inside(A v, A c) { return v >= -c && v <= c; }

// One run of n elements: bias bv[i] (BVEC) or the scalar bs.
template <int ACT, bool CLAMP, bool BVEC, class T, class A>
static inline void run_fwd(const T* __restrict__ x, T* __restrict__ y, const A* __restrict__ bv, A bs, int64_t n,
                           A alpha, A gain, A clamp) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const A z = A(ld(x[i])) + (BVEC ? bv[i] : bs);
    A v = Act<ACT, A>::f(z, alpha) * gain;
    if (CLAMP) v = clamp_val(v, clamp);
    y[i] = St<T>::cv(v);
  }
}

// Stores one gradient element and accumulates it for db: into db[0] (BVEC: db points at this
// element's channel) or into the run's sum.
template <bool BVEC, bool DB, class T, class A>
static inline void put_grad(T* __restrict__ dx, double* __restrict__ db, A& sum, A g) {
  *dx = St<T>::cv(g);
  if (DB) {
    if (BVEC)
      *db += double(g);
    else
      sum += g;
  }
}

// dx = dy * gain * act'(z) (zero where clamped); returns sum(dx) or adds dx into db[i] (BVEC).
template <int ACT, bool CLAMP, bool BVEC, bool DB, class T, class A>
static inline A run_grad(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                         const A* __restrict__ bv, A bs, double* __restrict__ db, int64_t n, A alpha, A gain,
                         A clamp) {
  A sum = A(0);
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    const A z = A(ld(x[i])) + (BVEC ? bv[i] : bs);
    const A a = Act<ACT, A>::f(z, alpha);
    A g = A(ld(dy[i])) * gain * Act<ACT, A>::d(z, a, alpha);
    if (CLAMP) g = inside(a * gain, clamp) ? g : A(0);
    put_grad<BVEC, DB>(dx + i, BVEC ? db + i : db, sum, g);
  }
  return sum;
}

// dx = dy * (y > 0 ? g_pos : g_neg), zero where |y| >= bound or y is NaN (CLAMP): the gradient of a
// piecewise-linear activation read off its output y. Returns sum(dx) or adds dx into db[i] (BVEC).
template <bool CLAMP, bool BVEC, bool DB, class T, class A>
static inline A run_grad_y(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                           double* __restrict__ db, int64_t n, A g_pos, A g_neg, A bound) {
  A sum = A(0);
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    const A o = A(ld(y[i]));
    A f = o > A(0) ? g_pos : g_neg;
    if (CLAMP) f = (o < bound && o > -bound) ? f : A(0);
    put_grad<BVEC, DB>(dx + i, BVEC ? db + i : db, sum, A(ld(dy[i])) * f);
  }
  return sum;
}

// out = g * dy * gain * act''(z) (zero where clamped).
template <int ACT, bool CLAMP, bool BVEC, class T, class A>
static inline void run_grad2(const T* __restrict__ gg, const T* __restrict__ dy, const T* __restrict__ x,
                             T* __restrict__ out, const A* __restrict__ bv, A bs, int64_t n, A alpha, A gain,
                             A clamp) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const A z = A(ld(x[i])) + (BVEC ? bv[i] : bs);
    A v = A(ld(gg[i])) * A(ld(dy[i])) * gain * Act<ACT, A>::dd(z, alpha);
    if (CLAMP) v = inside(Act<ACT, A>::f(z, alpha) * gain, clamp) ? v : A(0);
    out[i] = St<T>::cv(v);
  }
}

// Calls run(offset, n, bias_vec_or_null, bias_scalar, channel) for each run of [begin, end).
template <class A, class Fn>
static inline void ba_walk(const BaParams& p, int64_t begin, int64_t end, Fn run) {
  const A* b = static_cast<const A*>(p.b);
  if (b == nullptr) {
    run(begin, end - begin, static_cast<const A*>(nullptr), A(0), int64_t(0));
    return;
  }
  int64_t i = begin;
  if (p.inner > 1) {
    while (i < end) {
      const int64_t r = i / p.inner, c = r % p.C, left = (r + 1) * p.inner - i;
      const int64_t n = left < end - i ? left : end - i;
      run(i, n, static_cast<const A*>(nullptr), b[c], c);
      i += n;
    }
  } else {
    while (i < end) {
      const int64_t c = i % p.C, n = p.C - c < end - i ? p.C - c : end - i;
      run(i, n, b + c, A(0), c);
      i += n;
    }
  }
}

// Half types run the float loops on staged blocks: converting a block at a time lets both the
// conversions and the math vectorise (GCC does not vectorise loops that convert per element).
constexpr int64_t kStage = 512;

template <class T, class Fn>
static inline void staged(int64_t n, Fn fn) {
  for (int64_t k = 0; k < n; k += kStage) fn(k, n - k < kStage ? n - k : kStage);
}

template <int ACT, bool CLAMP, class T>
static void fwd_impl(const BaParams& p, const T* x, T* y, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  ba_walk<A>(p, begin, end, [&](int64_t o, int64_t n, const A* bv, A bs, int64_t) {
    if constexpr (std::is_same<T, A>::value) {
      if (bv)
        run_fwd<ACT, CLAMP, true>(x + o, y + o, bv, bs, n, alpha, gain, clamp);
      else
        run_fwd<ACT, CLAMP, false>(x + o, y + o, bv, bs, n, alpha, gain, clamp);
    } else {
      A xs[kStage], ys[kStage];
      staged<T>(n, [&](int64_t k, int64_t m) {
        convert_row(xs, x + o + k, m);
        if (bv)
          run_fwd<ACT, CLAMP, true>(xs, ys, bv + k, bs, m, alpha, gain, clamp);
        else
          run_fwd<ACT, CLAMP, false>(xs, ys, bv, bs, m, alpha, gain, clamp);
        convert_row(y + o + k, ys, m);
      });
    }
  });
}

template <int ACT, bool CLAMP, class S, class A>
static inline void grad_run(const S* dy, const S* x, S* dx, const A* bv, A bs, double* db, int64_t c, int64_t n,
                            A alpha, A gain, A clamp) {
  if (db == nullptr)
    run_grad<ACT, CLAMP, false, false>(dy, x, dx, bv, bs, db, n, alpha, gain, clamp);
  else if (bv)
    run_grad<ACT, CLAMP, true, true>(dy, x, dx, bv, bs, db + c, n, alpha, gain, clamp);
  else
    for (int64_t k = 0; k < n; k += kStage)  // float partial sums of at most kStage terms, added in double
      db[c] += double(run_grad<ACT, CLAMP, false, true>(dy + k, x + k, dx + k, bv, bs, db,
                                                        n - k < kStage ? n - k : kStage, alpha, gain, clamp));
}

template <int ACT, bool CLAMP, class T>
static void grad_impl(const BaParams& p, const T* dy, const T* x, T* dx, double* db, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  ba_walk<A>(p, begin, end, [&](int64_t o, int64_t n, const A* bv, A bs, int64_t c) {
    if constexpr (std::is_same<T, A>::value) {
      grad_run<ACT, CLAMP>(dy + o, x + o, dx + o, bv, bs, db, c, n, alpha, gain, clamp);
    } else {
      A dys[kStage], xs[kStage], dxs[kStage];
      staged<T>(n, [&](int64_t k, int64_t m) {
        convert_row(dys, dy + o + k, m);
        convert_row(xs, x + o + k, m);
        grad_run<ACT, CLAMP>(dys, xs, dxs, bv ? bv + k : bv, bs, db, c + (bv ? k : 0), m, alpha, gain, clamp);
        convert_row(dx + o + k, dxs, m);
      });
    }
  });
}

template <bool CLAMP, class S, class A>
static inline void grad_y_run(const S* dy, const S* y, S* dx, bool bvec, double* db, int64_t c, int64_t n, A g_pos,
                              A g_neg, A bound) {
  if (db == nullptr)
    run_grad_y<CLAMP, false, false>(dy, y, dx, db, n, g_pos, g_neg, bound);
  else if (bvec)
    run_grad_y<CLAMP, true, true>(dy, y, dx, db + c, n, g_pos, g_neg, bound);
  else
    for (int64_t k = 0; k < n; k += kStage)  // as in grad_run
      db[c] += double(run_grad_y<CLAMP, false, true>(dy + k, y + k, dx + k, db, n - k < kStage ? n - k : kStage,
                                                     g_pos, g_neg, bound));
}

// The walk follows the bias only to know each element's channel (for db); y already holds it.
template <bool CLAMP, class T>
static void grad_y_impl(const BaParams& p, const T* dy, const T* y, T* dx, double* db, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const A g_pos = A(p.gain), g_neg = g_pos * A(p.alpha), bound = A(p.clamp);  // rounded like the torch glue
  ba_walk<A>(p, begin, end, [&](int64_t o, int64_t n, const A* bv, A, int64_t c) {
    if constexpr (std::is_same<T, A>::value) {
      grad_y_run<CLAMP>(dy + o, y + o, dx + o, bv != nullptr, db, c, n, g_pos, g_neg, bound);
    } else {
      A dys[kStage], ys[kStage], dxs[kStage];
      staged<T>(n, [&](int64_t k, int64_t m) {
        convert_row(dys, dy + o + k, m);
        convert_row(ys, y + o + k, m);
        grad_y_run<CLAMP>(dys, ys, dxs, bv != nullptr, db, c + (bv ? k : 0), m, g_pos, g_neg, bound);
        convert_row(dx + o + k, dxs, m);
      });
    }
  });
}

template <int ACT, bool CLAMP, class T>
static void grad2_impl(const BaParams& p, const T* g, const T* dy, const T* x, T* out, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  auto run = [&](const auto* gg, const auto* dd, const auto* xx, auto* oo, const A* bv, A bs, int64_t n) {
    if (bv)
      run_grad2<ACT, CLAMP, true>(gg, dd, xx, oo, bv, bs, n, alpha, gain, clamp);
    else
      run_grad2<ACT, CLAMP, false>(gg, dd, xx, oo, bv, bs, n, alpha, gain, clamp);
  };
  ba_walk<A>(p, begin, end, [&](int64_t o, int64_t n, const A* bv, A bs, int64_t) {
    if constexpr (std::is_same<T, A>::value) {
      run(g + o, dy + o, x + o, out + o, bv, bs, n);
    } else {
      A gs[kStage], dys[kStage], xs[kStage], os[kStage];
      staged<T>(n, [&](int64_t k, int64_t m) {
        convert_row(gs, g + o + k, m);
        convert_row(dys, dy + o + k, m);
        convert_row(xs, x + o + k, m);
        run(gs, dys, xs, os, bv ? bv + k : bv, bs, m);
        convert_row(out + o + k, os, m);
      });
    }
  });
}

// Entry points: switch the run-time activation code and clamp flag onto the templates.
#define FG_BA_SWITCH(IMPL, ...)                                                          \
  switch (p.act * 2 + (p.has_clamp ? 1 : 0)) {                                          \
    case 0: IMPL<0, false>(__VA_ARGS__); break;   case 1: IMPL<0, true>(__VA_ARGS__); break;  \
    case 2: IMPL<1, false>(__VA_ARGS__); break;   case 3: IMPL<1, true>(__VA_ARGS__); break;  \
    case 4: IMPL<2, false>(__VA_ARGS__); break;   case 5: IMPL<2, true>(__VA_ARGS__); break;  \
    case 6: IMPL<3, false>(__VA_ARGS__); break;   case 7: IMPL<3, true>(__VA_ARGS__); break;  \
    case 8: IMPL<4, false>(__VA_ARGS__); break;   case 9: IMPL<4, true>(__VA_ARGS__); break;  \
    case 10: IMPL<5, false>(__VA_ARGS__); break;  case 11: IMPL<5, true>(__VA_ARGS__); break; \
    case 12: IMPL<6, false>(__VA_ARGS__); break;  case 13: IMPL<6, true>(__VA_ARGS__); break; \
    case 14: IMPL<7, false>(__VA_ARGS__); break;  case 15: IMPL<7, true>(__VA_ARGS__); break; \
    case 16: IMPL<8, false>(__VA_ARGS__); break;  default: IMPL<8, true>(__VA_ARGS__); break; \
  }

template <class T>
void ba_fwd(const BaParams& p, const T* x, T* y, int64_t begin, int64_t end) {
  FG_BA_SWITCH(fwd_impl, p, x, y, begin, end)
}

template <class T>
void ba_grad(const BaParams& p, const T* dy, const T* x, T* dx, double* db, int64_t begin, int64_t end) {
  FG_BA_SWITCH(grad_impl, p, dy, x, dx, db, begin, end)
}

// p.alpha holds the negative slope, p.clamp the saturation bound (see bias_act_grad_y_cpu).
template <class T>
void ba_grad_y(const BaParams& p, const T* dy, const T* y, T* dx, double* db, int64_t begin, int64_t end) {
  if (p.has_clamp)
    grad_y_impl<true>(p, dy, y, dx, db, begin, end);
  else
    grad_y_impl<false>(p, dy, y, dx, db, begin, end);
}

template <class T>
void ba_grad2(const BaParams& p, const T* g, const T* dy, const T* x, T* out, int64_t begin, int64_t end) {
  FG_BA_SWITCH(grad2_impl, p, g, dy, x, out, begin, end)
}

#undef FG_BA_SWITCH

}  // namespace FG_ISA_NS
}  // namespace fastgan_cpu
