// adain plane kernels, compiled once per ISA (included by adain.cpp inside namespace
// fastgan_cpu::FG_ISA_NS; no include guard on purpose, no includes: see common.h).
//
// Forward: one pass of lane-parallel Welford updates (8 running means / M2 sums, merged with Chan's
// formula) for the statistics, one pass y = (x - mean) * a + c. Backward: one pass for sum(dy) and
// sum(dy * (x - mean)), one pass for dx.

namespace fastgan_cpu {
namespace FG_ISA_NS {

// Mean and biased variance of x[0..n).
template <class T>
static inline void adain_stats(const T* __restrict__ x, int64_t n, T* mean_out, T* var_out) {
  constexpr int L = 8;
  T mean[L], m2[L];
  for (int l = 0; l < L; ++l) mean[l] = T(0), m2[l] = T(0);
  const int64_t nb = n / L;
  for (int64_t k = 0; k < nb; ++k) {
    const T inv = T(1) / T(k + 1);
    const T* __restrict__ xs = x + k * L;
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const T d = xs[l] - mean[l];
      mean[l] += d * inv;
      m2[l] += d * (xs[l] - mean[l]);
    }
  }
  // Chan's merge of the lanes (each holds nb values), then the tail one value at a time.
  T cnt = T(nb), mu = mean[0], M = m2[0];
  T tot = cnt;
  for (int l = 1; l < L; ++l) {
    const T ntot = tot + cnt;
    const T d = mean[l] - mu;
    if (ntot > T(0)) {
      mu += d * cnt / ntot;
      M += m2[l] + d * d * tot * cnt / ntot;
    }
    tot = ntot;
  }
  for (int64_t i = nb * L; i < n; ++i) {
    tot += T(1);
    const T d = x[i] - mu;
    mu += d / tot;
    M += d * (x[i] - mu);
  }
  *mean_out = mu;
  *var_out = M / T(n);
}

template <class T>
static void adain_fwd_planes(const T* x, const T* scale, const T* bias, T* y, T* mean, T* rstd, int64_t n, T eps,
                             int64_t b, int64_t e) {
  for (int64_t pl = b; pl < e; ++pl) {
    const T* __restrict__ xp = x + pl * n;
    T* __restrict__ yp = y + pl * n;
    T mu, var;
    adain_stats(xp, n, &mu, &var);
    const T r = T(1) / __builtin_sqrt(static_cast<double>(var + eps));
    const T a = r * scale[pl], c = bias[pl];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) yp[i] = (xp[i] - mu) * a + c;
    mean[pl] = mu;
    rstd[pl] = r;
  }
}

template <class T>
static void adain_bwd_planes(const T* dy, const T* x, const T* scale, const T* mean, const T* rstd, T* dx, T* dscale,
                             T* dbias, int64_t n, int64_t b, int64_t e) {
  for (int64_t pl = b; pl < e; ++pl) {
    const T* __restrict__ g = dy + pl * n;
    const T* __restrict__ xp = x + pl * n;
    T* __restrict__ dxp = dx + pl * n;
    const T mu = mean[pl], r = rstd[pl];
    T sg = T(0), sgx = T(0);
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t i = 0; i < n; ++i) {
      sg += g[i];
      sgx += g[i] * (xp[i] - mu);
    }
    const T sgxn = sgx * r;  // sum(dy * xn)
    dscale[pl] = sgxn;
    dbias[pl] = sg;
    // dx = r * s * (dy - mean(dy) - xn * mean(dy * xn)), xn = (x - mu) * r
    const T k = r * scale[pl], m_g = sg / T(n), kx = sgxn / T(n) * r;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dxp[i] = k * (g[i] - m_g - (xp[i] - mu) * kx);
  }
}

}  // namespace FG_ISA_NS
}  // namespace fastgan_cpu
