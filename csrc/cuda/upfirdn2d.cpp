// Torch glue of the CUDA upfirdn2d: validation, filter preparation, output allocation, launches.
#include <cmath>
#include <cstdlib>
#include <vector>

#include "glue.h"
#include "upfirdn2d_index.h"

namespace fastgan_cuda {
namespace {

constexpr const char* kOp = "upfirdn2d";

// Python-style floor division for b > 0.
int64_t floor_div64(int64_t a, int64_t b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); }

// One kernel launch: x [N, C, H, W] through the correlation-ordered 2-D taps [fh, fw] (accumulation
// dtype, gain folded in). The output keeps x's memory format (contiguous or channels_last).
at::Tensor run_pass(const at::Tensor& x, const at::Tensor& taps, int up_x, int up_y, int down_x, int down_y,
                    int pad_x0, int pad_x1, int pad_y0, int pad_y1) {
  const int64_t f_h = taps.size(0), f_w = taps.size(1);
  const int64_t in_h = x.size(2), in_w = x.size(3);
  const int64_t out_w = floor_div64(in_w * up_x + pad_x0 + pad_x1 - f_w + down_x, down_x);
  const int64_t out_h = floor_div64(in_h * up_y + pad_y0 + pad_y1 - f_h + down_y, down_y);
  TORCH_CHECK_VALUE(out_w >= 1 && out_h >= 1, kOp, ": empty output ", out_h, "x", out_w, " for x ", x.sizes(),
                    ", filter ", f_h, "x", f_w, "; the padded image must be at least as large as the filter");
  // Every coordinate the kernels form stays within these spans (int32 index math).
  to_int(std::max(in_w * up_x, out_w * down_x) + std::abs(pad_x0) + std::abs(pad_x1) + f_w, kOp, "padded width");
  to_int(std::max(in_h * up_y, out_h * down_y) + std::abs(pad_y0) + std::abs(pad_y1) + f_h, kOp, "padded height");
  to_int(x.size(0) * x.size(1), kOp, "batch * channels");

  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(x.suggest_memory_format()));
  Upfirdn2dParams p{};
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  p.f = taps.data_ptr();
  p.dtype = kernel_dtype(x, kOp, "x");
  for (int d = 0; d < 4; ++d) {
    p.x_stride[d] = x.stride(d);
    p.y_stride[d] = y.stride(d);
  }
  p.n = static_cast<int>(x.size(0));
  p.c = static_cast<int>(x.size(1));
  p.in_h = static_cast<int>(in_h);
  p.in_w = static_cast<int>(in_w);
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  p.up_x = up_x;
  p.up_y = up_y;
  p.down_x = down_x;
  p.down_y = down_y;
  p.pad_x0 = pad_x0;
  p.pad_y0 = pad_y0;
  p.f_w = static_cast<int>(f_w);
  p.f_h = static_cast<int>(f_h);
  check_launch(upfirdn2d_launch(p, current_stream(x)), kOp);
  return y;
}

std::vector<int> ints(const std::vector<int64_t>& v, size_t n, int64_t min_value, const char* name) {
  TORCH_CHECK_VALUE(v.size() == n, kOp, ": ", name, " must have ", n, " values, got ", v.size());
  std::vector<int> out;
  for (int64_t a : v) {
    TORCH_CHECK_VALUE(a >= min_value, kOp, ": ", name, " must be >= ", min_value, ", got ", a);
    out.push_back(to_int(a, kOp, name));
  }
  return out;
}

}  // namespace

// x [N, C, H, W]; f [fh, fw] or separable [ft]; up, down = (x, y); pad = (x0, x1, y0, y1); gain = total
// gain; flip_filter false = true convolution. Output in x's dtype and memory format.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, const std::vector<int64_t>& up,
                     const std::vector<int64_t>& down, const std::vector<int64_t>& pad, bool flip_filter, double gain) {
  kernel_dtype(x, kOp, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  TORCH_CHECK_VALUE(x.dim() == 4, kOp, ": x must have 4 dimensions [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(f.is_cuda(), kOp, ": f must be a CUDA tensor, got one on ", f.device());
  check_same_device(f, x, kOp, "f");
  TORCH_CHECK_TYPE(at::isFloatingType(f.scalar_type()), kOp, ": f must be a floating-point tensor, got ",
                   f.scalar_type());
  TORCH_CHECK_VALUE(f.dim() == 1 || f.dim() == 2, kOp, ": f must have 1 or 2 dimensions, got shape ", f.sizes());
  TORCH_CHECK_VALUE(f.numel() > 0, kOp, ": f must have at least one tap, got shape ", f.sizes());
  const std::vector<int> u = ints(up, 2, 1, "up"), d = ints(down, 2, 1, "down"), pd = ints(pad, 4, INT32_MIN, "pad");

  // Correlation-ordered taps in the accumulation dtype, scaled like the ref: gain ** (f.ndim / 2).
  at::Tensor taps = f.to(acc_scalar_type(x.scalar_type()));
  if (!flip_filter) taps = taps.flip(f.dim() == 2 ? std::vector<int64_t>{0, 1} : std::vector<int64_t>{0});
  taps = (taps * std::pow(gain, f.dim() / 2.0)).contiguous();

  if (f.dim() == 2) return run_pass(x, taps, u[0], u[1], d[0], d[1], pd[0], pd[1], pd[2], pd[3]);

  // Separable: a horizontal and a vertical 1-D pass, ordered so the intermediate is the smaller one.
  const int64_t ft = taps.size(0);
  const at::Tensor taps_x = taps.view({1, ft}), taps_y = taps.view({ft, 1});
  const int64_t out_w = floor_div64(x.size(3) * u[0] + pd[0] + pd[1] - ft + d[0], d[0]);
  const int64_t out_h = floor_div64(x.size(2) * u[1] + pd[2] + pd[3] - ft + d[1], d[1]);
  if (x.size(2) * out_w <= out_h * x.size(3)) {
    const at::Tensor t = run_pass(x, taps_x, u[0], 1, d[0], 1, pd[0], pd[1], 0, 0);
    return run_pass(t, taps_y, 1, u[1], 1, d[1], 0, 0, pd[2], pd[3]);
  }
  const at::Tensor t = run_pass(x, taps_y, 1, u[1], 1, d[1], 0, 0, pd[2], pd[3]);
  return run_pass(t, taps_x, u[0], 1, d[0], 1, pd[0], pd[1], 0, 0);
}

}  // namespace fastgan_cuda
