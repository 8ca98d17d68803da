// Helpers shared by the torch glue of fastgan._C_cuda (compiled only with a CUDA build of torch).
#pragma once

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "fastgan_cuda.h"

namespace fastgan_cuda {

// `t` must be a CUDA tensor with one of the four float dtypes; returns the kernel element type.
inline DType kernel_dtype(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  switch (t.scalar_type()) {
    case at::kHalf: return DType::kHalf;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kFloat: return DType::kFloat;
    case at::kDouble: return DType::kDouble;
    default: break;
  }
  TORCH_CHECK_TYPE(false, op, ": ", name, " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
  return DType::kFloat;  // unreachable
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ", x.device());
}

// Accumulation dtype of the kernels for tensors of dtype `dt`.
inline at::ScalarType acc_scalar_type(at::ScalarType dt) { return dt == at::kDouble ? at::kDouble : at::kFloat; }

inline void* current_stream(const at::Tensor& t) {
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
}

inline void check_launch(int err, const char* op) {
  TORCH_CHECK(err == 0, op, ": CUDA kernel launch failed: ", error_string(err));
}

// The value must fit the int32 index math of the kernels.
inline int to_int(int64_t v, const char* op, const char* what) {
  TORCH_CHECK_VALUE(v >= -(int64_t{1} << 30) && v <= (int64_t{1} << 30), op, ": ", what, " = ", v,
                    " is too large for the CUDA kernels (limit 2^30)");
  return static_cast<int>(v);
}

}  // namespace fastgan_cuda
