// Device-side helpers shared by the fastgan CUDA kernels: element/accumulation types,
// conversions, launch geometry and error reporting. CUDA only (no torch).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fastgan_cuda.h"

namespace fastgan_cuda {

// Accumulation type: float for half, bfloat16 and float; double for double.
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v);
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

// Calls fn(T()) with T the element type of `dtype`.
template <typename Fn>
int dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kHalf: return fn(__half());
    case DType::kBFloat16: return fn(__nv_bfloat16());
    case DType::kFloat: return fn(float());
    case DType::kDouble: return fn(double());
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// Multiprocessor count of the current device (cached per device).
inline int sm_count() {
  static int cached[64] = {0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 80;
  if (dev < 0 || dev >= 64) return 80;
  if (cached[dev] == 0) {
    int n = 0;
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    cached[dev] = n > 0 ? n : 80;
  }
  return cached[dev];
}

// Blocks for a grid-stride loop over `work` items with `threads` per block: enough to fill every
// SM several times over, never more than the work needs.
inline unsigned grid_stride_blocks(int64_t work, int threads) {
  const int64_t need = (work + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 32;
  const int64_t blocks = need < cap ? need : cap;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

inline int last_error() { return static_cast<int>(cudaGetLastError()); }

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace fastgan_cuda
