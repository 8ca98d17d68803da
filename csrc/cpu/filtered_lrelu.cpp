// filtered_lrelu on CPU: argument checks, the tiling plan, and the parallel launch of the fused kernel
// in filtered_lrelu_kernels.h. Registered as torch.ops.fastgan.cpu_filtered_lrelu.
//
// One primitive serves the forward, the backward and every higher derivative (see
// fastgan/ops/filtered_lrelu.py): u = FIR f1 of (x + b) upsampled by `up` with padding pad1 on the
// upsampled grid; a = act(u) (or u times the stored sign mask); y = FIR f2 of a padded by pad2,
// downsampled by `down`. Filters arrive in correlation order; 1-D filters are separable.
#include "common.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace fastgan_cpu {

// Plain data for the kernels (compiled per ISA; they call no library code).
struct FlrPlan {
  int64_t N, C, H, W, Hm, Wm, Ho, Wo, up, down;
  int64_t p1x0, p1y0, p2x0, p2y0, f1h, f1w, f2h, f2w;
  bool sep1, sep2;
  const void* f1;  // [f1w] (separable) or [f1h * f1w], correlation order, kernel scalar type
  const void* f2;
  double gain, slope, clamp;  // clamp < 0: none
  // stage 1 along x: output phase ph covers u columns phJ + up*m (m < phM) and reads phK taps
  // f1[phC + up*k] at padded-input positions XL0 + phBase + m + k.
  const int64_t *phJ, *phM, *phC, *phK, *phBase;
  int64_t XL, XL0, WmR;
  // stage 2 along x: activated rows hold column j at AL0 + j (APL long), split into `down`
  // sub-rows of SL (row stride AR); Dbuf rows are WoR long.
  int64_t AL0, APL, SL, AR, WoR;
  const int64_t* tap2;        // [f2w] offset of x tap c of stage 2 in an activated row
  int64_t Ws;                 // sign bytes per intermediate row (4 values per byte)
  int64_t bands, band_rows;   // work items: N*C*bands
  size_t off_x, off_h, off_u, off_tmp, off_a, off_apad, off_d, off_w, off_ptr, off_codes, scratch_bytes;
};

}  // namespace fastgan_cpu

#define FG_KERNELS "filtered_lrelu_kernels.h"
#include "isa_compile.h"

namespace fastgan_cpu {
namespace {

constexpr const char* kOp = "filtered_lrelu";

int64_t fmod_(int64_t a, int64_t m) { return ((a % m) + m) % m; }
int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

struct PlanData {
  std::vector<int64_t> phJ, phM, phC, phK, phBase, tap2;
  std::vector<float> f1f, f2f;
  std::vector<double> f1d, f2d;
};

void plan_x_geometry(FlrPlan& p, PlanData& d) {
  const int64_t up = p.up;
  d.phJ.assign(up, 0), d.phM.assign(up, 0), d.phC.assign(up, 0), d.phK.assign(up, 0), d.phBase.assign(up, 0);
  int64_t lo = 0, hi = p.W, mmax = 0;
  for (int64_t ph = 0; ph < up; ++ph) {
    const int64_t J = fmod_(ph + p.p1x0, up);
    const int64_t M = J < p.Wm ? (p.Wm - J + up - 1) / up : 0;
    const int64_t Cc = (up - ph) % up;
    const int64_t K = Cc < p.f1w ? (p.f1w - Cc + up - 1) / up : 0;
    const int64_t base = (J - p.p1x0 + Cc) / up;  // exact: J - p1x0 + Cc is a multiple of up
    d.phJ[ph] = J, d.phM[ph] = M, d.phC[ph] = Cc, d.phK[ph] = K, d.phBase[ph] = base;
    mmax = std::max(mmax, M);
    if (M > 0 && K > 0) {
      lo = std::min(lo, base);
      hi = std::max(hi, base + round8(M) + K);
    }
  }
  p.XL0 = -lo;
  p.XL = hi - lo + 8;
  p.WmR = round8(std::max(p.Wm, mmax)) + 8;
  p.phJ = d.phJ.data(), p.phM = d.phM.data(), p.phC = d.phC.data(), p.phK = d.phK.data();
  p.phBase = d.phBase.data();

  p.AL0 = std::max<int64_t>(0, p.p2x0);
  const int64_t pos_max = p.AL0 + p.f2w - 1 - p.p2x0;
  if (p.down == 1) {
    p.SL = p.APL = p.AR = std::max(p.AL0 + p.Wm, pos_max + round8(p.Wo)) + 8;
  } else {
    p.SL = std::max((p.AL0 + p.Wm + p.down - 1) / p.down, pos_max / p.down + round8(p.Wo)) + 8;
    p.APL = p.SL * p.down;
    p.AR = p.APL;
  }
  p.WoR = round8(p.Wo) + 8;
  d.tap2.resize(p.f2w);
  for (int64_t c = 0; c < p.f2w; ++c) {
    const int64_t pos = p.AL0 + c - p.p2x0;
    d.tap2[c] = (pos % p.down) * p.SL + pos / p.down;
  }
  p.tap2 = d.tap2.data();
  p.Ws = (p.Wm + 3) / 4;
}

size_t take(size_t& off, size_t bytes) {
  size_t at = off;
  off += (bytes + 63) / 64 * 64;
  return at;
}

void plan_bands(FlrPlan& p, size_t sa) {
  const int64_t planes = p.N * p.C, nt = std::max(at::get_num_threads(), 1);
  const int64_t row_bytes = static_cast<int64_t>(sa) * (p.AR + (p.sep2 ? p.WoR : 0) +
                                                        (p.XL + (p.sep1 ? p.WmR : 0)) / p.up + 1);
  const int64_t budget = 256 << 10;
  int64_t rows = std::max<int64_t>(1, (budget / std::max<int64_t>(row_bytes, 1) - p.f2h) / p.down);
  rows = std::min(rows, p.Ho);
  const int64_t want_items = 4 * nt;
  if (planes * ((p.Ho + rows - 1) / rows) < want_items) {
    const int64_t per_plane = std::min(p.Ho, (want_items + planes - 1) / planes);
    rows = std::max<int64_t>(1, (p.Ho + per_plane - 1) / per_plane);
  }
  p.band_rows = rows;
  p.bands = (p.Ho + rows - 1) / rows;

  const int64_t nri = std::min(p.Hm, (rows - 1) * p.down + p.f2h);
  const int64_t nrx = std::min(p.H, (nri + p.f1h - 2) / p.up + 2);
  const int64_t kmax = p.f1h * p.f1w + p.f2h * p.f2w + p.f1w + p.f2w;
  size_t off = 0;
  p.off_x = take(off, sa * nrx * p.XL);
  p.off_h = take(off, p.sep1 ? sa * nrx * p.WmR : 0);
  p.off_u = take(off, sa * p.WmR);
  p.off_tmp = take(off, sa * p.up * p.WmR);
  p.off_a = take(off, sa * nri * p.AR);
  p.off_apad = take(off, p.down > 1 ? sa * p.APL : 0);
  p.off_d = take(off, p.sep2 ? sa * nri * p.WoR : 0);
  p.off_w = take(off, sa * kmax);
  p.off_ptr = take(off, sizeof(void*) * kmax);
  p.off_codes = take(off, sizeof(int32_t) * p.WmR);
  p.scratch_bytes = off;
}

template <class T>
void launch(const FlrPlan& p, const at::Tensor& x, const at::Tensor& b, at::Tensor& y, const at::Tensor& sg_in,
            at::Tensor& sg_out) {
  const T* xp = x.data_ptr<T>();
  const T* bp = b.defined() ? b.data_ptr<T>() : nullptr;
  T* yp = y.data_ptr<T>();
  const uint8_t* si = sg_in.defined() ? sg_in.data_ptr<uint8_t>() : nullptr;
  uint8_t* so = sg_out.defined() ? sg_out.data_ptr<uint8_t>() : nullptr;
  at::parallel_for(0, p.N * p.C * p.bands, 1, [&](int64_t beg, int64_t end) {
    Scratch scratch(p.scratch_bytes);
    std::memset(scratch.get(), 0, p.scratch_bytes);
    FG_ISA_CALL(flr_items<T>, p, xp, bp, yp, si, so, beg, end, scratch.get());
  });
}

std::vector<int64_t> check_pad(c10::IntArrayRef pad, const char* name) {
  TORCH_CHECK_VALUE(pad.size() == 4, kOp, ": ", name, " must have 4 entries [x0, x1, y0, y1], got ", pad.size());
  return pad.vec();
}

void check_filter(const at::Tensor& f, const char* name) {
  TORCH_CHECK_VALUE(f.defined(), kOp, ": ", name, " must be a tensor");
  TORCH_CHECK_VALUE(f.device().is_cpu(), kOp, ": ", name, " must be a CPU tensor");
  TORCH_CHECK_TYPE(f.scalar_type() == at::kFloat, kOp, ": ", name, " must be float32, got ", f.scalar_type());
  TORCH_CHECK_VALUE((f.dim() == 1 || f.dim() == 2) && f.numel() >= 1, kOp, ": ", name,
                    " must be 1-D [ft] or 2-D [fh, fw] with at least one tap, got shape ", f.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_cpu(const at::Tensor& x_in, const c10::optional<at::Tensor>& b_in,
                                                      const at::Tensor& f1, const at::Tensor& f2, int64_t up,
                                                      int64_t down, c10::IntArrayRef pad1_in,
                                                      c10::IntArrayRef pad2_in, double gain, double slope,
                                                      double clamp, const c10::optional<at::Tensor>& signs_in,
                                                      bool write_signs) {
  check_float_tensor(x_in, kOp, "x");
  TORCH_CHECK_TYPE(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kDouble, kOp,
                   ": x must be float32 or float64 here (the Python glue converts half types), got ",
                   x_in.scalar_type());
  TORCH_CHECK_VALUE(x_in.dim() == 4, kOp, ": x must have 4 dimensions [N, C, H, W], got shape ", x_in.sizes());
  check_filter(f1, "f1");
  check_filter(f2, "f2");
  TORCH_CHECK_VALUE(up >= 1 && down >= 1, kOp, ": up and down must be >= 1, got ", up, " and ", down);
  TORCH_CHECK_VALUE(std::isfinite(gain) && std::isfinite(slope), kOp, ": gain and slope must be finite");
  const auto pad1 = check_pad(pad1_in, "pad1");
  const auto pad2 = check_pad(pad2_in, "pad2");

  FlrPlan p{};
  p.N = x_in.size(0), p.C = x_in.size(1), p.H = x_in.size(2), p.W = x_in.size(3);
  p.up = up, p.down = down;
  p.sep1 = f1.dim() == 1, p.sep2 = f2.dim() == 1;
  p.f1w = f1.size(-1), p.f1h = f1.size(0), p.f2w = f2.size(-1), p.f2h = f2.size(0);
  p.p1x0 = pad1[0], p.p1y0 = pad1[2], p.p2x0 = pad2[0], p.p2y0 = pad2[2];
  p.Wm = p.W * up + pad1[0] + pad1[1] - p.f1w + 1;
  p.Hm = p.H * up + pad1[2] + pad1[3] - p.f1h + 1;
  const int64_t numw = p.Wm + pad2[0] + pad2[1] - p.f2w, numh = p.Hm + pad2[2] + pad2[3] - p.f2h;
  TORCH_CHECK_VALUE(p.N * p.C * p.H * p.W >= 1 && p.Wm >= 1 && p.Hm >= 1 && numw >= 0 && numh >= 0, kOp,
                    ": empty output for x ", x_in.sizes(), ", f1 ", f1.sizes(), ", f2 ", f2.sizes(), ", up ", up,
                    ", down ", down, ", pad1 ", pad1_in, ", pad2 ", pad2_in);
  p.Wo = numw / down + 1, p.Ho = numh / down + 1;
  p.gain = gain, p.slope = slope, p.clamp = clamp;

  const at::Tensor x = x_in.contiguous();
  at::Tensor b;
  if (b_in.has_value() && b_in->defined()) {
    check_float_tensor(*b_in, kOp, "b");
    TORCH_CHECK_VALUE(b_in->dim() == 1 && b_in->size(0) == p.C, kOp, ": b must have shape [", p.C, "], got ",
                      b_in->sizes());
    b = b_in->to(x.scalar_type()).contiguous();
  }
  PlanData d;
  plan_x_geometry(p, d);
  at::Tensor sg_in, sg_out;
  if (signs_in.has_value() && signs_in->defined()) {
    TORCH_CHECK_TYPE(signs_in->scalar_type() == at::kByte, kOp, ": signs must be uint8, got ",
                     signs_in->scalar_type());
    TORCH_CHECK_VALUE(signs_in->dim() == 4 && signs_in->size(0) == p.N && signs_in->size(1) == p.C &&
                          signs_in->size(2) == p.Hm && signs_in->size(3) == p.Ws,
                      kOp, ": signs must have shape [", p.N, ", ", p.C, ", ", p.Hm, ", ", p.Ws, "], got ",
                      signs_in->sizes());
    TORCH_CHECK_VALUE(!write_signs, kOp, ": write_signs needs signs=None");
    sg_in = signs_in->contiguous();
  } else if (write_signs) {
    sg_out = at::zeros({p.N, p.C, p.Hm, p.Ws}, x.options().dtype(at::kByte));
  }

  const bool dbl = x.scalar_type() == at::kDouble;
  at::Tensor f1c = f1.contiguous(), f2c = f2.contiguous();
  if (dbl) {
    d.f1d.assign(f1c.data_ptr<float>(), f1c.data_ptr<float>() + f1c.numel());
    d.f2d.assign(f2c.data_ptr<float>(), f2c.data_ptr<float>() + f2c.numel());
    p.f1 = d.f1d.data(), p.f2 = d.f2d.data();
  } else {
    d.f1f.assign(f1c.data_ptr<float>(), f1c.data_ptr<float>() + f1c.numel());
    d.f2f.assign(f2c.data_ptr<float>(), f2c.data_ptr<float>() + f2c.numel());
    p.f1 = d.f1f.data(), p.f2 = d.f2f.data();
  }
  plan_bands(p, dbl ? sizeof(double) : sizeof(float));

  at::Tensor y = at::empty({p.N, p.C, p.Ho, p.Wo}, x.options());
  if (dbl)
    launch<double>(p, x, b, y, sg_in, sg_out);
  else
    launch<float>(p, x, b, y, sg_in, sg_out);
  return {y, sg_out.defined() ? sg_out : at::empty({0}, x.options().dtype(at::kByte))};
}

}  // namespace fastgan_cpu

TORCH_LIBRARY_FRAGMENT(fastgan_cpu, m) {
  m.def("filtered_lrelu(Tensor x, Tensor? b, Tensor f1, Tensor f2, int up, int down, int[] pad1, int[] pad2, "
        "float gain, float slope, float clamp, Tensor? signs, bool write_signs) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastgan_cpu, CPU, m) { m.impl("filtered_lrelu", &fastgan_cpu::filtered_lrelu_cpu); }
