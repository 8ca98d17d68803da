// bias_act on CPU: argument checks, layout analysis and the parallel launch of the kernels in
// bias_act_kernels.h. Registered as torch.ops.fastgan_cpu.bias_act / _grad / _grad_y / _grad2.
#include "common.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace fastgan_cpu {

// Memory-order view [outer, C, inner] of a dense tensor and the op's scalars, as plain data.
struct BaParams {
  int64_t numel, C, inner;
  int act;
  double alpha, gain, clamp;
  bool has_clamp;
  const void* b;  // bias converted to the accumulation type, or nullptr
};

}  // namespace fastgan_cpu

#define FG_KERNELS "bias_act_kernels.h"
#include "isa_compile.h"

namespace fastgan_cpu {
namespace {

constexpr int kNumActs = 9;      // codes of fastgan/backends/activations.py
constexpr int64_t kGrain = 1 << 15;

struct Prepared {
  BaParams p{};
  at::Tensor x, b_acc;
};

// Checks shared by the three entry points; makes x dense and computes the [outer, C, inner] view.
Prepared prepare(const char* op, const at::Tensor& x_in, const c10::optional<at::Tensor>& b, int64_t dim,
                 int64_t act, double alpha, double gain, double clamp) {
  check_float_tensor(x_in, op, "x");
  TORCH_CHECK_VALUE(dim >= 0 && dim < std::max<int64_t>(x_in.dim(), 1), op, ": dim must be in [0, ",
                    std::max<int64_t>(x_in.dim(), 1) - 1, "] for x of shape ", x_in.sizes(), ", got ", dim);
  TORCH_CHECK_VALUE(act >= 0 && act < kNumActs, op, ": act must be an activation code in [0, ", kNumActs - 1,
                    "], got ", act);
  TORCH_CHECK_VALUE(std::isfinite(alpha) && std::isfinite(gain), op, ": alpha and gain must be finite, got ",
                    alpha, " and ", gain);
  Prepared r;
  r.x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();
  const bool dbl = r.x.scalar_type() == at::kDouble;
  BaParams& p = r.p;
  p.numel = r.x.numel();
  p.act = static_cast<int>(act);
  p.alpha = alpha, p.gain = gain, p.clamp = clamp;
  p.has_clamp = !(clamp < 0);  // negative (or None on the Python side) disables it; NaN clamps to NaN
  p.C = 1, p.inner = std::max<int64_t>(p.numel, 1);
  p.b = nullptr;
  if (b.has_value() && b->defined()) {
    check_float_tensor(*b, op, "b");
    TORCH_CHECK_VALUE(x_in.dim() >= 1 && b->dim() == 1 && b->size(0) == x_in.size(dim), op,
                      ": b must be 1-D with x.shape[", dim, "] elements for x of shape ", x_in.sizes(),
                      ", got shape ", b->sizes());
    r.b_acc = b->to(dbl ? at::kDouble : at::kFloat).contiguous();
    p.b = r.b_acc.data_ptr();
    if (r.x.size(dim) > 1) {
      p.C = r.x.size(dim);
      p.inner = r.x.stride(dim);
    }
  }
  return r;
}

// t laid out exactly like x (same strides), copying only when it is not.
at::Tensor like_x(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  check_float_tensor(t, op, name);
  TORCH_CHECK_VALUE(t.sizes() == x.sizes(), op, ": ", name, " must have the shape of x ", x.sizes(), ", got ",
                    t.sizes());
  if (t.scalar_type() == x.scalar_type() && t.strides() == x.strides()) return t;
  return at::empty_like(x).copy_(t);
}

}  // namespace

at::Tensor bias_act_cpu(const at::Tensor& x_in, const c10::optional<at::Tensor>& b, int64_t dim, int64_t act,
                        double alpha, double gain, double clamp) {
  Prepared r = prepare("bias_act", x_in, b, dim, act, alpha, gain, clamp);
  at::Tensor y = at::empty_like(r.x);
  prefer_huge_pages(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.x.scalar_type(), "fastgan_cpu_bias_act", [&] {
    const scalar_t* xp = r.x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, r.p.numel, kGrain,
                     [&](int64_t s, int64_t e) { FG_ISA_CALL(ba_fwd<scalar_t>, r.p, xp, yp, s, e); });
  });
  return y;
}

namespace {

// (dx, db) of one gradient pass over r.x: ba_grad from x, or ba_grad_y from the output (from_y).
// db: fixed chunks with one partial row each, summed in chunk order (deterministic for a given
// thread count; the Python side sums in a fixed order under deterministic algorithms).
std::tuple<at::Tensor, at::Tensor> grad_pass(const Prepared& r, const at::Tensor& dy,
                                             const c10::optional<at::Tensor>& b, bool from_y) {
  at::Tensor dx = at::empty_like(r.x);
  prefer_huge_pages(dx);
  const bool want_db = r.p.b != nullptr;
  const int64_t nchunks =
      want_db ? std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (r.p.numel + kGrain - 1) / kGrain))
              : 1;
  std::vector<double> part(want_db ? nchunks * r.p.C : 0, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.x.scalar_type(), "fastgan_cpu_bias_act_grad", [&] {
    const scalar_t* dyp = dy.data_ptr<scalar_t>();
    const scalar_t* xp = r.x.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    auto pass = [&](double* db, int64_t s, int64_t e) {
      if (from_y)
        FG_ISA_CALL(ba_grad_y<scalar_t>, r.p, dyp, xp, dxp, db, s, e);
      else
        FG_ISA_CALL(ba_grad<scalar_t>, r.p, dyp, xp, dxp, db, s, e);
    };
    if (!want_db) {
      at::parallel_for(0, r.p.numel, kGrain, [&](int64_t s, int64_t e) { pass(nullptr, s, e); });
      return;
    }
    const int64_t per = (r.p.numel + nchunks - 1) / nchunks;
    at::parallel_for(0, nchunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t k = cb; k < ce; ++k) {
        const int64_t s = std::min(r.p.numel, k * per), e = std::min(r.p.numel, s + per);
        pass(part.data() + k * r.p.C, s, e);
      }
    });
  });
  if (!want_db) return {dx, at::empty({0}, r.x.options())};
  at::Tensor acc = at::zeros({r.p.C}, at::TensorOptions().dtype(at::kDouble));
  double* ap = acc.data_ptr<double>();
  for (int64_t k = 0; k < nchunks; ++k)
    for (int64_t c = 0; c < r.p.C; ++c) ap[c] += part[k * r.p.C + c];
  return {dx, acc.to(b->scalar_type())};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> bias_act_grad_cpu(const at::Tensor& dy_in, const at::Tensor& x_in,
                                                     const c10::optional<at::Tensor>& b, int64_t dim, int64_t act,
                                                     double alpha, double gain, double clamp) {
  Prepared r = prepare("bias_act_grad", x_in, b, dim, act, alpha, gain, clamp);
  return grad_pass(r, like_x("bias_act_grad", "dy", dy_in, r.x), b, false);
}

// The gradient of a piecewise-linear bias_act read off its output y: dx = dy * gain * (y > 0 ? 1 :
// slope), zero where |y| >= bound (bound < 0: no clamp); db as in bias_act_grad.
std::tuple<at::Tensor, at::Tensor> bias_act_grad_y_cpu(const at::Tensor& dy_in, const at::Tensor& y_in,
                                                       const c10::optional<at::Tensor>& b, int64_t dim,
                                                       double slope, double gain, double bound) {
  const char* op = "bias_act_grad_y";
  Prepared r = prepare(op, y_in, b, dim, /*act=*/0, slope, gain, bound);
  return grad_pass(r, like_x(op, "dy", dy_in, r.x), b, true);
}

at::Tensor bias_act_grad2_cpu(const at::Tensor& g_in, const at::Tensor& dy_in, const at::Tensor& x_in,
                              const c10::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha, double gain,
                              double clamp) {
  Prepared r = prepare("bias_act_grad2", x_in, b, dim, act, alpha, gain, clamp);
  at::Tensor g = like_x("bias_act_grad2", "g", g_in, r.x);
  at::Tensor dy = like_x("bias_act_grad2", "dy", dy_in, r.x);
  at::Tensor out = at::empty_like(r.x);
  prefer_huge_pages(out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.x.scalar_type(), "fastgan_cpu_bias_act_grad2", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* dyp = dy.data_ptr<scalar_t>();
    const scalar_t* xp = r.x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, r.p.numel, kGrain,
                     [&](int64_t s, int64_t e) { FG_ISA_CALL(ba_grad2<scalar_t>, r.p, gp, dyp, xp, op, s, e); });
  });
  return out;
}

}  // namespace fastgan_cpu

TORCH_LIBRARY_FRAGMENT(fastgan_cpu, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, int act, float alpha, float gain, float clamp) -> Tensor");
  m.def("bias_act_grad(Tensor dy, Tensor x, Tensor? b, int dim, int act, float alpha, float gain, "
        "float clamp) -> (Tensor, Tensor)");
  m.def("bias_act_grad_y(Tensor dy, Tensor y, Tensor? b, int dim, float slope, float gain, float bound) -> "
        "(Tensor, Tensor)");
  m.def("bias_act_grad2(Tensor g, Tensor dy, Tensor x, Tensor? b, int dim, int act, float alpha, "
        "float gain, float clamp) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgan_cpu, CPU, m) {
  m.impl("bias_act", &fastgan_cpu::bias_act_cpu);
  m.impl("bias_act_grad", &fastgan_cpu::bias_act_grad_cpu);
  m.impl("bias_act_grad_y", &fastgan_cpu::bias_act_grad_y_cpu);
  m.impl("bias_act_grad2", &fastgan_cpu::bias_act_grad2_cpu);
}
