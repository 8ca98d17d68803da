// Torch glue of the CUDA bias_act: validation, layout matching, output allocation, launches.
//
// The kernels walk tensors in storage order, so x is made dense (non-overlapping and dense: contiguous,
// channels_last or any permutation) and dy / g are brought to x's exact strides; outputs get them too.
#include <tuple>

#include "glue.h"

namespace fastgan_cuda {
namespace {

constexpr const char* kOp = "bias_act";

at::Tensor dense(const at::Tensor& x) { return x.is_non_overlapping_and_dense() ? x : x.contiguous(); }

// `t` with x's shape, dtype and strides (copied only when they differ).
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x, const char* name) {
  kernel_dtype(t, kOp, name);
  check_same_device(t, x, kOp, name);
  TORCH_CHECK_VALUE(t.sizes() == x.sizes(), kOp, ": ", name, " must have the shape of x ", x.sizes(), ", got ",
                    t.sizes());
  if (t.strides() == x.strides() && t.scalar_type() == x.scalar_type()) return t;
  return at::empty_like(x).copy_(t);
}

struct Launch {
  at::Tensor x;        // dense x
  at::Tensor b;        // b in x's dtype, contiguous (undefined without bias)
  BiasActParams p;     // everything but dy, g and out
};

Launch prepare(const at::Tensor& x_in, const c10::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha,
               double gain, c10::optional<double> clamp) {
  Launch s;
  s.p = BiasActParams{};
  s.p.dtype = kernel_dtype(x_in, kOp, "x");
  const int64_t ndim = x_in.dim() > 0 ? x_in.dim() : 1;
  TORCH_CHECK_VALUE(dim >= 0 && dim < ndim, kOp, ": dim must be in [0, ", ndim - 1, "] for x of shape ", x_in.sizes(),
                    ", got ", dim);
  TORCH_CHECK_VALUE(act >= 0 && act < kNumActs, kOp, ": unknown activation code ", act);
  s.x = dense(x_in);
  s.p.x = s.x.data_ptr();
  s.p.numel = s.x.numel();
  s.p.bias_stride = 1;
  s.p.bias_size = 1;
  if (b.has_value() && b->defined()) {
    kernel_dtype(*b, kOp, "b");
    check_same_device(*b, x_in, kOp, "b");
    TORCH_CHECK_VALUE(x_in.dim() >= 1 && b->dim() == 1 && b->size(0) == x_in.size(dim), kOp,
                      ": b must be 1-D with x.shape[dim] elements, got shape ", b->sizes(), " for x of shape ",
                      x_in.sizes(), " and dim ", dim);
    s.b = b->to(x_in.scalar_type()).contiguous();
    s.p.b = s.b.data_ptr();
    if (s.x.size(dim) > 1) {  // a size-1 dim may carry any stride; its channel is always 0
      s.p.bias_stride = s.x.stride(dim);
      s.p.bias_size = s.x.size(dim);
    }
  }
  s.p.act = static_cast<int>(act);
  s.p.alpha = alpha;
  s.p.gain = gain;
  s.p.clamp = clamp.has_value() && *clamp >= 0 ? *clamp : -1.0;
  return s;
}

}  // namespace

// clamp(act(x + b) * gain); b [x.shape[dim]] or None; clamp None (or < 0) = none.
at::Tensor bias_act(const at::Tensor& x, const c10::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha,
                    double gain, c10::optional<double> clamp) {
  kernel_dtype(x, kOp, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  Launch s = prepare(x, b, dim, act, alpha, gain, clamp);
  at::Tensor y = at::empty_like(s.x);
  s.p.out = y.data_ptr();
  check_launch(bias_act_launch(s.p, BiasActMode::kForward, current_stream(s.x)), kOp);
  return y;
}

// (dx, db): dx = dy * gain * act'(x + b), zero where the output was clamped; db = dx summed over every
// dim but `dim`, in b's dtype (an undefined tensor without b).
std::tuple<at::Tensor, at::Tensor> bias_act_grad(const at::Tensor& dy, const at::Tensor& x,
                                                 const c10::optional<at::Tensor>& b, int64_t dim, int64_t act,
                                                 double alpha, double gain, c10::optional<double> clamp) {
  kernel_dtype(x, kOp, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  Launch s = prepare(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor dy_ = like_x(dy, s.x, "dy");
  void* stream = current_stream(s.x);
  at::Tensor dx = at::empty_like(s.x);
  s.p.dy = dy_.data_ptr();
  s.p.out = dx.data_ptr();
  check_launch(bias_act_launch(s.p, BiasActMode::kGrad, stream), kOp);
  if (!s.b.defined()) return {dx, at::Tensor()};

  // dx in storage order is [outer, channels, inner] with inner = the stride of the bias dim.
  at::Tensor db = at::zeros({s.p.bias_size}, s.x.options().dtype(acc_scalar_type(s.x.scalar_type())));
  const int64_t channels = s.p.bias_size, inner = s.p.bias_stride;
  const int64_t outer = s.p.numel / (channels * inner);
  check_launch(bias_grad_reduce_launch(dx.data_ptr(), s.p.dtype, outer, channels, inner, db.data_ptr(), stream), kOp);
  return {dx, db.to(b->scalar_type())};
}

// d_x = g * dy * gain * act''(x + b), zero where the output was clamped (the x-gradient of bias_act_grad).
at::Tensor bias_act_grad2(const at::Tensor& g, const at::Tensor& dy, const at::Tensor& x,
                          const c10::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha, double gain,
                          c10::optional<double> clamp) {
  kernel_dtype(x, kOp, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  Launch s = prepare(x, b, dim, act, alpha, gain, clamp);
  const at::Tensor dy_ = like_x(dy, s.x, "dy");
  const at::Tensor g_ = like_x(g, s.x, "g");
  at::Tensor out = at::empty_like(s.x);
  s.p.dy = dy_.data_ptr();
  s.p.g = g_.data_ptr();
  s.p.out = out.data_ptr();
  check_launch(bias_act_launch(s.p, BiasActMode::kGrad2, current_stream(s.x)), kOp);
  return out;
}

}  // namespace fastgan_cuda
