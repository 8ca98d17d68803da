// Torch glue of the CUDA filtered_lrelu primitive (fastgan/ops/filtered_lrelu.py calls it through
// fastgan/backends/cuda_filtered_lrelu.py): validation, filter preparation, allocation, launch.
#include <tuple>
#include <vector>

#include "glue.h"

namespace fastgan_cuda {
namespace {

constexpr const char* kOp = "filtered_lrelu";

int64_t floor_div64(int64_t a, int64_t b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); }

// Correlation-order taps, contiguous, in the accumulation dtype (1-D separable taps stay 1-D).
at::Tensor taps_acc(const at::Tensor& f, const at::Tensor& x, at::ScalarType acc, const char* name) {
  TORCH_CHECK_VALUE(f.is_cuda(), kOp, ": ", name, " must be a CUDA tensor, got one on ", f.device());
  check_same_device(f, x, kOp, name);
  TORCH_CHECK_TYPE(at::isFloatingType(f.scalar_type()), kOp, ": ", name, " must be floating point, got ",
                   f.scalar_type());
  TORCH_CHECK_VALUE((f.dim() == 1 || f.dim() == 2) && f.numel() >= 1, kOp, ": ", name,
                    " must be 1-D [ft] or 2-D [fh, fw] with at least one tap, got shape ", f.sizes());
  return f.to(acc).contiguous();
}

std::vector<int> pad4(const std::vector<int64_t>& v, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 4, kOp, ": ", name, " must have 4 entries [x0, x1, y0, y1], got ", v.size());
  std::vector<int> out;
  for (int64_t a : v) out.push_back(to_int(a, kOp, name));
  return out;
}

}  // namespace

// (y, signs): y = FIR f2 of act(gain * FIR f1 of up(x + b)) downsampled (see fastgan_cuda.h); signs are the
// 2-bit activation codes [N, C, mid_h, ceil(mid_w / 4)] when write_signs, else an empty uint8 tensor.
// With `signs` given, the stored codes replace the activation.
std::tuple<at::Tensor, at::Tensor> filtered_lrelu_fused(const at::Tensor& x, const c10::optional<at::Tensor>& b,
                                                        const at::Tensor& f1, const at::Tensor& f2, int64_t up,
                                                        int64_t down, const std::vector<int64_t>& pad1,
                                                        const std::vector<int64_t>& pad2, double gain, double slope,
                                                        c10::optional<double> clamp,
                                                        const c10::optional<at::Tensor>& signs, bool write_signs) {
  const DType dtype = kernel_dtype(x, kOp, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  TORCH_CHECK_VALUE(x.dim() == 4, kOp, ": x must have 4 dimensions [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(up >= 1 && down >= 1, kOp, ": up and down must be >= 1, got ", up, " and ", down);
  const at::ScalarType acc = acc_scalar_type(x.scalar_type());
  const at::Tensor k1 = taps_acc(f1, x, acc, "f1"), k2 = taps_acc(f2, x, acc, "f2");
  // Filter extents (a separable filter has the same taps on both axes).
  const int64_t f1_w = k1.size(-1), f1_h = k1.size(0), f2_w = k2.size(-1), f2_h = k2.size(0);
  const std::vector<int> p1 = pad4(pad1, "pad1"), p2 = pad4(pad2, "pad2");

  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t mid_w = w * up + p1[0] + p1[1] - f1_w + 1, mid_h = h * up + p1[2] + p1[3] - f1_h + 1;
  const int64_t num_w = mid_w + p2[0] + p2[1] - f2_w, num_h = mid_h + p2[2] + p2[3] - f2_h;
  TORCH_CHECK_VALUE(mid_w >= 1 && mid_h >= 1 && num_w >= 0 && num_h >= 0, kOp, ": empty output for x ", x.sizes(),
                    ", f1 ", f1.sizes(), ", f2 ", f2.sizes(), ", up ", up, ", down ", down);
  const int64_t out_w = floor_div64(num_w, down) + 1, out_h = floor_div64(num_h, down) + 1;
  to_int(std::max(w * up, mid_w) + std::abs(p1[0]) + std::abs(p1[1]) + f1_w, kOp, "padded width");
  to_int(std::max(h * up, mid_h) + std::abs(p1[2]) + std::abs(p1[3]) + f1_h, kOp, "padded height");
  to_int(std::max(mid_w, out_w * down) + std::abs(p2[0]) + std::abs(p2[1]) + f2_w + 8, kOp, "mid width");
  to_int(std::max(mid_h, out_h * down) + std::abs(p2[2]) + std::abs(p2[3]) + f2_h, kOp, "mid height");
  to_int(n * c, kOp, "batch * channels");
  const int64_t signs_w = (mid_w + 3) / 4;

  FilteredLreluParams p{};
  at::Tensor bias, signs_in, signs_out;
  if (b.has_value() && b->defined()) {
    kernel_dtype(*b, kOp, "b");
    check_same_device(*b, x, kOp, "b");
    TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == c, kOp, ": b must have shape [", c, "], got ", b->sizes());
    bias = b->to(acc).contiguous();
    p.b = bias.data_ptr();
  }
  if (signs.has_value() && signs->defined()) {
    TORCH_CHECK_VALUE(!write_signs, kOp, ": write_signs needs signs=None");
    TORCH_CHECK_TYPE(signs->scalar_type() == at::kByte, kOp, ": signs must be uint8, got ", signs->scalar_type());
    check_same_device(*signs, x, kOp, "signs");
    TORCH_CHECK_VALUE(signs->sizes() == at::IntArrayRef({n, c, mid_h, signs_w}), kOp, ": signs must have shape [",
                      n, ", ", c, ", ", mid_h, ", ", signs_w, "], got ", signs->sizes());
    signs_in = signs->contiguous();
    p.signs_in = signs_in.data_ptr<uint8_t>();
  } else if (write_signs) {
    signs_out = at::zeros({n, c, mid_h, signs_w}, x.options().dtype(at::kByte));
    p.signs_out = signs_out.data_ptr<uint8_t>();
  }

  at::Tensor y = at::empty({n, c, out_h, out_w}, x.options().memory_format(x.suggest_memory_format()));
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  p.f1 = k1.data_ptr();
  p.f2 = k2.data_ptr();
  p.dtype = dtype;
  for (int d = 0; d < 4; ++d) {
    p.x_stride[d] = x.stride(d);
    p.y_stride[d] = y.stride(d);
  }
  p.n = static_cast<int>(n);
  p.c = static_cast<int>(c);
  p.in_h = static_cast<int>(h);
  p.in_w = static_cast<int>(w);
  p.mid_h = static_cast<int>(mid_h);
  p.mid_w = static_cast<int>(mid_w);
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up = static_cast<int>(up);
  p.down = static_cast<int>(down);
  p.pad1_x0 = p1[0];
  p.pad1_y0 = p1[2];
  p.pad2_x0 = p2[0];
  p.pad2_y0 = p2[2];
  p.f1_w = static_cast<int>(f1_w);
  p.f1_h = static_cast<int>(f1_h);
  p.f2_w = static_cast<int>(f2_w);
  p.f2_h = static_cast<int>(f2_h);
  p.f1_separable = k1.dim() == 1;
  p.f2_separable = k2.dim() == 1;
  p.signs_w = static_cast<int>(signs_w);
  p.gain = gain;
  p.slope = slope;
  p.clamp = clamp.has_value() && *clamp >= 0 ? *clamp : -1.0;
  const int err = filtered_lrelu_launch(p, current_stream(x));
  TORCH_CHECK_VALUE(err != static_cast<int>(cudaErrorInvalidValue), kOp, ": filters ", k1.sizes(), " and ",
                    k2.sizes(), " are too large for the CUDA kernel's shared memory");
  check_launch(err, kOp);
  return {y, signs_out.defined() ? signs_out : at::empty({0}, x.options().dtype(at::kByte))};
}

}  // namespace fastgan_cuda
