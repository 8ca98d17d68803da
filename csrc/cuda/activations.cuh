// The bias_act activations with their first and second derivatives, in the accumulation type.
//
// The derivatives follow what torch autograd computes for the ref backend, including the value
// chosen at kinks: relu' = 1 only for z > 0, lrelu' = 1 for z > 0 else alpha, elu'/selu' use the
// exponential branch for z <= 0 but elu''/selu'' only for z < 0 (0 at z = 0), softplus (beta 1, threshold 20) is linear for z > 20 and its
// second derivative is nonzero only for z < 20.
#pragma once

#include "cuda_common.cuh"

namespace fastgan_cuda {

__device__ __forceinline__ float fg_exp(float v) { return expf(v); }
__device__ __forceinline__ double fg_exp(double v) { return exp(v); }
__device__ __forceinline__ float fg_expm1(float v) { return expm1f(v); }
__device__ __forceinline__ double fg_expm1(double v) { return expm1(v); }
__device__ __forceinline__ float fg_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double fg_log1p(double v) { return log1p(v); }
__device__ __forceinline__ float fg_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double fg_tanh(double v) { return tanh(v); }

// Logistic function without overflow: exp() only ever sees a nonpositive argument.
template <typename A>
__device__ __forceinline__ A fg_sigmoid(A z) {
  if (z >= A(0)) return A(1) / (A(1) + fg_exp(-z));
  const A e = fg_exp(z);
  return e / (A(1) + e);
}

template <typename A>
struct ActValue {
  A y;    // act(z)
  A d;    // act'(z)
  A d2;   // act''(z)
};

// All three values; after inlining the compiler drops the ones a kernel does not use.
template <typename A>
__device__ __forceinline__ ActValue<A> activate(int act, A z, A alpha) {
  constexpr double kSeluScale = 1.0507009873554804934193349852946;
  constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
  constexpr double kSoftplusThreshold = 20.0;
  ActValue<A> v;
  switch (act) {
    case kRelu:
      v.y = z > A(0) ? z : A(0);
      v.d = z > A(0) ? A(1) : A(0);
      v.d2 = A(0);
      break;
    case kLrelu:
      v.y = z > A(0) ? z : z * alpha;
      v.d = z > A(0) ? A(1) : alpha;
      v.d2 = A(0);
      break;
    case kTanh: {
      const A t = fg_tanh(z);
      v.y = t;
      v.d = A(1) - t * t;
      v.d2 = A(-2) * t * v.d;
      break;
    }
    case kSigmoid: {
      const A s = fg_sigmoid(z);
      v.y = s;
      v.d = s * (A(1) - s);
      v.d2 = v.d * (A(1) - A(2) * s);
      break;
    }
    case kElu: {
      const bool pos = z > A(0);
      const A e = fg_exp(pos ? A(0) : z);
      v.y = pos ? z : fg_expm1(z);
      v.d = pos ? A(1) : e;
      v.d2 = z < A(0) ? e : A(0);
      break;
    }
    case kSelu: {
      const A scale = A(kSeluScale), sa = A(kSeluScale * kSeluAlpha);
      const bool pos = z > A(0);
      const A e = fg_exp(pos ? A(0) : z);
      v.y = pos ? scale * z : sa * fg_expm1(z);
      v.d = pos ? scale : sa * e;
      v.d2 = z < A(0) ? sa * e : A(0);
      break;
    }
    case kSoftplus: {
      const A th = A(kSoftplusThreshold);
      const A s = fg_sigmoid(z);
      v.y = z > th ? z : fg_log1p(fg_exp(z));
      v.d = z > th ? A(1) : s;
      v.d2 = z < th ? s * (A(1) - s) : A(0);
      break;
    }
    case kSwish: {
      // y = z * s; y' = s + z s (1 - s); y'' = s (1 - s) (2 + z (1 - 2 s)).
      const A s = fg_sigmoid(z);
      const A ds = s * (A(1) - s);
      v.y = z * s;
      v.d = s + z * ds;
      v.d2 = ds * (A(2) + z * (A(1) - A(2) * s));
      break;
    }
    default:  // kLinear (the glue rejects unknown codes)
      v.y = z;
      v.d = A(1);
      v.d2 = A(0);
      break;
  }
  return v;
}

}  // namespace fastgan_cuda
