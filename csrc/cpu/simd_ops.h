// Row primitives shared by the kernels: weighted sums of rows, element conversions, (de)interleaving.
// Included inside an ISA namespace by each *_kernels.h (no include guard, no includes: see common.h).
// Everything here is written so that GCC vectorises the loops for the ISA of the enclosing region.

#if FG_F16C  // F16C half conversions, one element at a time (convert_row below has 8-wide ones)
static FG_INLINE float ld(c10::Half v) {
  _Float16 h;
  __builtin_memcpy(&h, &v.x, sizeof(h));
  return static_cast<float>(h);
}
#else
static FG_INLINE float ld(c10::Half v) { return static_cast<float>(v); }
#endif
static FG_INLINE float ld(c10::BFloat16 v) {
  uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float out;
  __builtin_memcpy(&out, &bits, sizeof(out));
  return out;
}
static FG_INLINE float ld(float v) { return v; }
static FG_INLINE double ld(double v) { return v; }

template <class D> struct St;
template <> struct St<float> { static inline float cv(float v) { return v; } };
template <> struct St<double> { static inline double cv(double v) { return v; } };
#if FG_F16C
template <> struct St<c10::Half> {
  static FG_INLINE c10::Half cv(float v) {
    const _Float16 h = static_cast<_Float16>(v);  // round to nearest even, like c10::Half(float)
    uint16_t bits;
    __builtin_memcpy(&bits, &h, sizeof(bits));
    return c10::Half(bits, c10::Half::from_bits());
  }
};
#else
template <> struct St<c10::Half> { static FG_INLINE c10::Half cv(float v) { return c10::Half(v); } };
#endif
// float -> bfloat16 rounding to nearest even (NaN -> quiet NaN), branch-free so that it vectorises.
template <> struct St<c10::BFloat16> {
  static FG_INLINE c10::BFloat16 cv(float v) {
    uint32_t u;
    __builtin_memcpy(&u, &v, sizeof(u));
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    r = v != v ? 0x7fc0u : r;
    return c10::BFloat16(static_cast<uint16_t>(r), c10::BFloat16::from_bits());
  }
};

template <class D, class A> static inline void fill_zero(D* __restrict__ dst, int64_t n) {
  const D z = St<D>::cv(A(0));
  for (int64_t i = 0; i < n; ++i) dst[i] = z;
}

template <class D, class S> static inline void convert_row(D* __restrict__ dst, const S* __restrict__ src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = St<D>::cv(ld(src[i]));
}
#if FG_F16C  // GCC does not vectorise half conversions by itself: 8 at a time with F16C
static inline void convert_row(float* __restrict__ dst, const c10::Half* __restrict__ src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = ld(src[i]);
}
static inline void convert_row(c10::Half* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = St<c10::Half>::cv(src[i]);
}
#endif

// dst[i] (+)= sum_k w[k] * src[k][i] for K = 1..4 rows, in registers.
template <int K, bool ACC, class S, class D, class A>
static inline void comb_fixed(D* __restrict__ dst, const S* const* src, const A* w, int64_t n) {
  const S* __restrict__ s0 = src[0];
  const S* __restrict__ s1 = src[K > 1 ? 1 : 0];
  const S* __restrict__ s2 = src[K > 2 ? 2 : 0];
  const S* __restrict__ s3 = src[K > 3 ? 3 : 0];
  const A w0 = w[0], w1 = w[K > 1 ? 1 : 0], w2 = w[K > 2 ? 2 : 0], w3 = w[K > 3 ? 3 : 0];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    A v = w0 * A(ld(s0[i]));
    if (K > 1) v += w1 * A(ld(s1[i]));
    if (K > 2) v += w2 * A(ld(s2[i]));
    if (K > 3) v += w3 * A(ld(s3[i]));
    if (ACC) v += A(ld(dst[i]));
    dst[i] = St<D>::cv(v);
  }
}

template <bool ACC, class S, class D, class A>
static inline void comb_group(D* dst, const S* const* src, const A* w, int64_t k, int64_t n) {
  switch (k) {
    case 1: comb_fixed<1, ACC>(dst, src, w, n); break;
    case 2: comb_fixed<2, ACC>(dst, src, w, n); break;
    case 3: comb_fixed<3, ACC>(dst, src, w, n); break;
    default: comb_fixed<4, ACC>(dst, src, w, n); break;
  }
}

// dst[i] = (acc ? dst[i] : 0) + sum_{k<K} w[k] * src[k][i], accumulated in A. D must be A when
// K > 4 or acc is set (the partial sums are kept in dst).
template <class S, class D, class A>
static inline void combine(D* dst, const S* const* src, const A* w, int64_t K, int64_t n, bool acc) {
  if (K <= 0) {
    if (!acc) fill_zero<D, A>(dst, n);
    return;
  }
  int64_t g = K < 4 ? K : 4;
  if (acc)
    comb_group<true>(dst, src, w, g, n);
  else
    comb_group<false>(dst, src, w, g, n);
  for (int64_t k = g; k < K; k += 4) {
    int64_t gk = K - k < 4 ? K - k : 4;
    comb_group<true>(dst, src + k, w + k, gk, n);
  }
}

// combine() into any output type: through the A-typed row `tmp` when D != A and K > 4.
template <class S, class D, class A>
static inline void combine_to(D* dst, const S* const* src, const A* w, int64_t K, int64_t n, A* tmp) {
  if (K <= 0) {
    fill_zero<D, A>(dst, n);
  } else if (K <= 4) {
    comb_group<false>(dst, src, w, K, n);
  } else if constexpr (std::is_same<D, A>::value) {
    combine(dst, src, w, K, n, false);
  } else {
    combine(tmp, src, w, K, n, false);
    convert_row(dst, tmp, n);
  }
}

// sub[r][q] = buf[r + s*q] for r < s (polyphase split of a row so every tap reads contiguously).
template <class A>
static inline void deinterleave(const A* __restrict__ buf, int64_t L, int64_t s, A* __restrict__ subs, int64_t SL) {
  if (s == 2) {
    A* __restrict__ e = subs;
    A* __restrict__ o = subs + SL;
    const int64_t h = L / 2;
    for (int64_t q = 0; q < h; ++q) {
      e[q] = buf[2 * q];
      o[q] = buf[2 * q + 1];
    }
    if (L & 1) e[h] = buf[L - 1];
    return;
  }
  for (int64_t r = 0; r < s; ++r) {
    A* __restrict__ d = subs + r * SL;
    for (int64_t q = 0; r + s * q < L; ++q) d[q] = buf[r + s * q];
  }
}

// out[ph + P*m] = rows[ph][m] (converted), the inverse of deinterleave for output phases.
template <class D, class A>
static inline void interleave(D* __restrict__ out, const A* __restrict__ rows, int64_t P, int64_t stride,
                              int64_t total) {
  if (P == 1) {
    convert_row(out, rows, total);
    return;
  }
  if (P == 2) {
    const A* __restrict__ r0 = rows;
    const A* __restrict__ r1 = rows + stride;
    const int64_t h = total / 2;
    for (int64_t m = 0; m < h; ++m) {
      out[2 * m] = St<D>::cv(r0[m]);
      out[2 * m + 1] = St<D>::cv(r1[m]);
    }
    if (total & 1) out[total - 1] = St<D>::cv(r0[h]);
    return;
  }
  for (int64_t ph = 0; ph < P && ph < total; ++ph) {
    const A* __restrict__ r = rows + ph * stride;
    for (int64_t o = ph, m = 0; o < total; o += P, ++m) out[o] = St<D>::cv(r[m]);
  }
}
