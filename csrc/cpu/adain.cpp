// adain (StyleGAN v1 adaptive instance norm) on CPU: checks and the parallel launch of the plane
// kernels in adain_kernels.h. Registered as torch.ops.fastgan.cpu_adain_fwd / cpu_adain_bwd.
#include "common.h"

#include <ATen/Parallel.h>

#define FG_KERNELS "adain_kernels.h"
#include "isa_compile.h"

namespace fastgan_cpu {
namespace {

constexpr const char* kOp = "adain";

void check_x(const at::Tensor& x, const char* name) {
  check_float_tensor(x, kOp, name);
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, kOp, ": ", name,
                   " must be float32 or float64 here (the Python glue converts half types), got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4 && x.numel() >= 1, kOp, ": ", name, " must be a non-empty [N, C, H, W] tensor, got ",
                    x.sizes());
}

at::Tensor per_plane(const at::Tensor& t, const at::Tensor& x, const char* name) {
  check_float_tensor(t, kOp, name);
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) == x.size(1), kOp, ": ", name,
                    " must have shape [", x.size(0), ", ", x.size(1), "], got ", t.sizes());
  return t.to(x.scalar_type()).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> adain_fwd_cpu(const at::Tensor& x_in, const at::Tensor& scale_in,
                                                             const at::Tensor& bias_in, double eps) {
  check_x(x_in, "x");
  TORCH_CHECK_VALUE(eps >= 0, kOp, ": eps must be >= 0, got ", eps);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor scale = per_plane(scale_in, x, "scale"), bias = per_plane(bias_in, x, "bias");
  at::Tensor y = at::empty_like(x), mean = at::empty({x.size(0), x.size(1)}, x.options());
  at::Tensor rstd = at::empty_like(mean);
  const int64_t n = x.size(2) * x.size(3), planes = x.size(0) * x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgan_cpu_adain_fwd", [&] {
    const scalar_t *xp = x.data_ptr<scalar_t>(), *sp = scale.data_ptr<scalar_t>(), *bp = bias.data_ptr<scalar_t>();
    scalar_t *yp = y.data_ptr<scalar_t>(), *mp = mean.data_ptr<scalar_t>(), *rp = rstd.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t b, int64_t e) {
      FG_ISA_CALL(adain_fwd_planes<scalar_t>, xp, sp, bp, yp, mp, rp, n, static_cast<scalar_t>(eps), b, e);
    });
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> adain_bwd_cpu(const at::Tensor& dy_in, const at::Tensor& x_in,
                                                             const at::Tensor& scale_in, const at::Tensor& mean_in,
                                                             const at::Tensor& rstd_in) {
  check_x(x_in, "x");
  check_x(dy_in, "dy");
  TORCH_CHECK_VALUE(dy_in.sizes() == x_in.sizes(), kOp, ": dy must have the shape of x ", x_in.sizes(), ", got ",
                    dy_in.sizes());
  const at::Tensor x = x_in.contiguous(), dy = dy_in.to(x.scalar_type()).contiguous();
  const at::Tensor scale = per_plane(scale_in, x, "scale"), mean = per_plane(mean_in, x, "mean");
  const at::Tensor rstd = per_plane(rstd_in, x, "rstd");
  at::Tensor dx = at::empty_like(x), dscale = at::empty_like(scale), dbias = at::empty_like(scale);
  const int64_t n = x.size(2) * x.size(3), planes = x.size(0) * x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgan_cpu_adain_bwd", [&] {
    const scalar_t *gp = dy.data_ptr<scalar_t>(), *xp = x.data_ptr<scalar_t>(), *sp = scale.data_ptr<scalar_t>();
    const scalar_t *mp = mean.data_ptr<scalar_t>(), *rp = rstd.data_ptr<scalar_t>();
    scalar_t *dxp = dx.data_ptr<scalar_t>(), *dsp = dscale.data_ptr<scalar_t>(), *dbp = dbias.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t b, int64_t e) {
      FG_ISA_CALL(adain_bwd_planes<scalar_t>, gp, xp, sp, mp, rp, dxp, dsp, dbp, n, b, e);
    });
  });
  return {dx, dscale, dbias};
}

}  // namespace fastgan_cpu

TORCH_LIBRARY_FRAGMENT(fastgan_cpu, m) {
  m.def("adain_fwd(Tensor x, Tensor scale, Tensor bias, float eps) -> (Tensor, Tensor, Tensor)");
  m.def("adain_bwd(Tensor dy, Tensor x, Tensor scale, Tensor mean, Tensor rstd) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastgan_cpu, CPU, m) {
  m.impl("adain_fwd", &fastgan_cpu::adain_fwd_cpu);
  m.impl("adain_bwd", &fastgan_cpu::adain_bwd_cpu);
}
