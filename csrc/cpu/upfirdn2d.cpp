// upfirdn2d on CPU: argument checks, the polyphase plan, and the parallel launch of the kernels
// in upfirdn2d_kernels.h. Registered as torch.ops.fastgan.cpu_upfirdn2d.
#include "common.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <numeric>
#include <vector>

namespace fastgan_cpu {

// Everything a kernel needs, as plain data (the kernels are compiled per ISA and must not call
// library code; see common.h). Columns are input-grid columns; "buffer positions" count from lo.
struct UpfPlan {
  int64_t N, C, H, W, OH, OW;
  int64_t upy, downy, py0, fh;    // y axis: walked per output row
  int64_t P, s;                   // x axis: output phases, input stride of one phase
  int64_t lo, L, a, b;            // row buffer holds columns [lo, lo+L); data only in [a, b)
  int64_t Tmax;                   // most taps of one phase
  const int64_t* phM;             // [P] outputs of each phase
  const int64_t* phT;             // [P] taps of each phase
  const int64_t* phPos;           // [P][Tmax] buffer position of tap t for the phase's first output
  bool separable;
  const void* wy;                 // separable: [fh] vertical taps, correlation order
  const void* wx;                 // [P][Tmax] (separable) or [fh][P][Tmax] x taps
  int64_t items_per_plane, rows_per_item;  // NCHW work split
  int64_t CB, ncb, Vmax;                   // NHWC channel blocking, most filter rows per output row
  size_t off_buf, off_sub, off_rows, off_w, off_ptr_in, off_ptr_acc, off_idx, scratch_bytes;
};

}  // namespace fastgan_cpu

#define FG_KERNELS "upfirdn2d_kernels.h"
#include "isa_compile.h"

namespace fastgan_cpu {
namespace {

constexpr const char* kOp = "upfirdn2d";

int64_t floor_mod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

// Correlation-order taps c[i][j] (the kernels compute sum c * x) of the filter as the ref applies it.
std::vector<double> correlation_taps(const at::Tensor& f, int64_t fh, int64_t fw, bool flip_filter) {
  at::Tensor fd = f.to(at::kDouble).contiguous();
  const double* src = fd.data_ptr<double>();
  std::vector<double> c(static_cast<size_t>(fh * fw));
  for (int64_t i = 0; i < fh; ++i)
    for (int64_t j = 0; j < fw; ++j)
      c[i * fw + j] = flip_filter ? src[i * fw + j] : src[(fh - 1 - i) * fw + (fw - 1 - j)];
  return c;
}

// c == outer(cy, cx) up to `tol` (relative to max |c|)? Fills cy, cx when it is.
bool factor_rank1(const std::vector<double>& c, int64_t fh, int64_t fw, double tol, std::vector<double>& cy,
                  std::vector<double>& cx) {
  size_t arg = 0;
  for (size_t k = 1; k < c.size(); ++k)
    if (std::fabs(c[k]) > std::fabs(c[arg])) arg = k;
  const double mx = std::fabs(c[arg]);
  cy.assign(fh, 0.0);
  cx.assign(fw, 0.0);
  if (mx == 0.0) return true;
  const int64_t r0 = static_cast<int64_t>(arg) / fw, c0 = static_cast<int64_t>(arg) % fw;
  for (int64_t i = 0; i < fh; ++i) cy[i] = c[i * fw + c0];
  for (int64_t j = 0; j < fw; ++j) cx[j] = c[r0 * fw + j] / c[arg];
  for (int64_t i = 0; i < fh; ++i)
    for (int64_t j = 0; j < fw; ++j)
      if (!(std::fabs(cy[i] * cx[j] - c[i * fw + j]) <= tol * mx)) return false;
  return true;
}

struct PlanData {
  UpfPlan p{};
  std::vector<int64_t> phM, phT, phPos;
  std::vector<float> wf_y, wf_x;
  std::vector<double> wd_y, wd_x;
};

size_t take(size_t& off, size_t bytes) {
  size_t at = off;
  off += (bytes + 63) / 64 * 64;
  return at;
}

void plan_scratch(UpfPlan& p, size_t sa, bool nhwc) {
  size_t off = 0;
  const int64_t kmax = p.fh + p.fh * p.Tmax + 4;
  if (nhwc) {
    p.off_buf = take(off, sa * (p.separable ? 1 : p.Vmax) * p.L * p.CB);
    p.off_sub = 0;
    p.off_rows = take(off, sa * p.CB);
  } else {
    const int64_t SL = (p.L + p.s - 1) / p.s;
    p.off_buf = take(off, sa * p.L);
    p.off_sub = take(off, p.s > 1 ? sa * p.s * SL : 0);
    p.off_rows = take(off, sa * p.P * ((p.OW + p.P - 1) / p.P));
  }
  p.off_w = take(off, sa * kmax);
  p.off_ptr_in = take(off, sizeof(void*) * kmax);
  p.off_ptr_acc = take(off, sizeof(void*) * kmax);
  p.off_idx = take(off, sizeof(int64_t) * 2 * p.fh);
  p.scratch_bytes = off;
}

template <class T>
void launch(const UpfPlan& p, const at::Tensor& x, at::Tensor& y, bool nhwc) {
  const T* xp = x.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  const int64_t items = nhwc ? p.N * p.OH * p.ncb : p.N * p.C * p.items_per_plane;
  // Small problems run on the calling thread: waking the pool costs more than ~16K outputs of work.
  const int64_t per_item = std::max<int64_t>(1, nhwc ? p.OW * p.CB : p.rows_per_item * p.OW);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / per_item);
  at::parallel_for(0, items, grain, [&](int64_t b, int64_t e) {
    Scratch scratch(p.scratch_bytes);
    if (nhwc)
      FG_ISA_CALL(upf_nhwc<T>, p, xp, yp, b, e, scratch.get());
    else
      FG_ISA_CALL(upf_nchw<T>, p, xp, yp, b, e, scratch.get());
  });
}

}  // namespace

at::Tensor upfirdn2d_cpu(const at::Tensor& x_in, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                         int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                         bool flip_filter, double gain) {
  check_float_tensor(x_in, kOp, "x");
  TORCH_CHECK_VALUE(x_in.dim() == 4, kOp, ": x must have 4 dimensions [N, C, H, W], got shape ", x_in.sizes());
  check_float_tensor(f, kOp, "f");
  TORCH_CHECK_VALUE(f.dim() == 1 || f.dim() == 2, kOp, ": f must be 1-D [ft] (separable) or 2-D [fh, fw], got shape ",
                    f.sizes());
  TORCH_CHECK_VALUE(f.numel() >= 1, kOp, ": f must have at least one tap, got shape ", f.sizes());
  TORCH_CHECK_VALUE(upx >= 1 && upy >= 1, kOp, ": up must be >= 1 on both axes, got (", upx, ", ", upy, ")");
  TORCH_CHECK_VALUE(downx >= 1 && downy >= 1, kOp, ": down must be >= 1 on both axes, got (", downx, ", ", downy,
                    ")");
  TORCH_CHECK_VALUE(std::isfinite(gain), kOp, ": gain must be finite, got ", gain);
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const bool sep1d = f.dim() == 1;
  const int64_t fw = sep1d ? f.size(0) : f.size(1), fh = f.size(0);
  const int64_t OW = (W * upx + padx0 + padx1 - fw + downx) / downx;  // floor division as in Python
  const int64_t OH = (H * upy + pady0 + pady1 - fh + downy) / downy;
  const int64_t numw = W * upx + padx0 + padx1 - fw + downx, numh = H * upy + pady0 + pady1 - fh + downy;
  TORCH_CHECK_VALUE(numw > 0 && numh > 0 && OW >= 1 && OH >= 1 && W >= 1 && H >= 1, kOp, ": empty output for x ",
                    x_in.sizes(), ", filter ", fh, "x", fw, ", up (", upx, ", ", upy, "), down (", downx, ", ", downy,
                    "), padding (", padx0, ", ", padx1, ", ", pady0, ", ", pady1,
                    "); the padded image must be at least as large as the filter");

  // Memory format: keep contiguous and channels_last; anything else runs as contiguous.
  at::Tensor x = x_in;
  bool nhwc = false, back_to_cl = false;
  if (x.suggest_memory_format() == at::MemoryFormat::ChannelsLast &&
      x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    nhwc = C >= 8;  // too few channels to vectorise over: run as NCHW and convert back
    back_to_cl = !nhwc;
  }
  if (!nhwc) x = x.contiguous();
  at::Tensor y = at::empty({N, C, OH, OW}, x.options().memory_format(nhwc ? at::MemoryFormat::ChannelsLast
                                                                           : at::MemoryFormat::Contiguous));
  prefer_huge_pages(y);
  if (N * C == 0) return back_to_cl ? y.contiguous(at::MemoryFormat::ChannelsLast) : y;

  // Taps in correlation order; separable when 1-D or rank-1 (exactly, to the precision of x's dtype).
  PlanData d;
  UpfPlan& p = d.p;
  std::vector<double> cy, cx, c2;
  bool separable = sep1d;
  if (sep1d) {
    c2 = correlation_taps(f.reshape({1, fw}), 1, fw, flip_filter);
    cy = c2;
    cx = c2;
  } else {
    c2 = correlation_taps(f, fh, fw, flip_filter);
    const double tol = x.scalar_type() == at::kDouble ? 8 * DBL_EPSILON : 4 * FLT_EPSILON;
    separable = factor_rank1(c2, fh, fw, tol, cy, cx);
  }
  if (separable)
    for (double& v : cx) v *= gain;
  else
    for (double& v : c2) v *= gain;

  p.N = N, p.C = C, p.H = H, p.W = W, p.OH = OH, p.OW = OW;
  p.upy = upy, p.downy = downy, p.py0 = pady0, p.fh = fh;
  p.separable = separable;
  const int64_t g = std::gcd(upx, downx);
  p.P = upx / g;
  p.s = downx / g;

  // x-axis polyphase plan: phase ph holds outputs ph, ph+P, ...; its first output's first tap is
  // filter column j0 at input column i0, and each next output moves s columns.
  std::vector<int64_t> j0(p.P), i0(p.P);
  d.phM.assign(p.P, 0);
  d.phT.assign(p.P, 0);
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  p.Tmax = 1;
  for (int64_t ph = 0; ph < p.P; ++ph) {
    const int64_t k0 = ph * downx - padx0;
    j0[ph] = floor_mod(-k0, upx);
    i0[ph] = (k0 + j0[ph]) / upx;
    const int64_t M = ph < OW ? (OW - ph + p.P - 1) / p.P : 0;
    const int64_t T = (M > 0 && j0[ph] < fw) ? (fw - j0[ph] + upx - 1) / upx : 0;
    d.phM[ph] = M;
    d.phT[ph] = T;
    p.Tmax = std::max(p.Tmax, T);
    if (T > 0) {
      lo = std::min(lo, i0[ph]);
      hi = std::max(hi, i0[ph] + p.s * (M - 1) + T);
    }
  }
  if (lo > hi) lo = 0, hi = 0;
  p.lo = lo;
  p.L = std::max<int64_t>(hi - lo, 1);
  p.a = std::min(std::max<int64_t>(lo, 0), W);
  p.b = std::max(std::min(hi, W), p.a);
  d.phPos.assign(p.P * p.Tmax, 0);
  for (int64_t ph = 0; ph < p.P; ++ph)
    for (int64_t t = 0; t < d.phT[ph]; ++t) d.phPos[ph * p.Tmax + t] = i0[ph] + t - lo;
  p.phM = d.phM.data();
  p.phT = d.phT.data();
  p.phPos = d.phPos.data();

  // Weights per phase: x tap t of phase ph is filter column j0[ph] + upx*t.
  const int64_t rows = separable ? 1 : fh;
  std::vector<double> wx(rows * p.P * p.Tmax, 0.0), wy = separable ? cy : std::vector<double>(fh, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t ph = 0; ph < p.P; ++ph)
      for (int64_t t = 0; t < d.phT[ph]; ++t) {
        const int64_t j = j0[ph] + upx * t;
        wx[(r * p.P + ph) * p.Tmax + t] = separable ? cx[j] : c2[r * fw + j];
      }
  const bool dbl = x.scalar_type() == at::kDouble;
  if (dbl) {
    d.wd_x = wx, d.wd_y = wy;
    p.wx = d.wd_x.data(), p.wy = d.wd_y.data();
  } else {
    d.wf_x.assign(wx.begin(), wx.end()), d.wf_y.assign(wy.begin(), wy.end());
    p.wx = d.wf_x.data(), p.wy = d.wf_y.data();
  }

  // Work split: whole planes when there are many, else blocks of rows so every thread has work.
  const size_t sa = dbl ? sizeof(double) : sizeof(float);
  const int64_t nt = std::max(at::get_num_threads(), 1);
  p.Vmax = (fh + upy - 1) / upy;
  if (nhwc) {
    const int64_t per_c = (separable ? 1 : p.Vmax) * p.L * static_cast<int64_t>(sa);
    const int64_t budget = 1 << 20;
    p.CB = per_c * C <= budget ? C : std::min(C, std::max<int64_t>(16, budget / per_c / 16 * 16));
    const int64_t rows = N * OH, target = 8 * nt;
    if (rows * ((C + p.CB - 1) / p.CB) < target) {  // few output rows: more, narrower channel blocks
      const int64_t want = (target + rows - 1) / rows;
      p.CB = std::min(p.CB, std::max<int64_t>(16, ((C + want - 1) / want + 15) / 16 * 16));
    }
    p.ncb = (C + p.CB - 1) / p.CB;
  } else {
    const int64_t planes = N * C, target = 8 * nt;
    int64_t ipp = planes >= target ? 1 : std::min(OH, (target + planes - 1) / planes);
    p.rows_per_item = (OH + ipp - 1) / ipp;
    p.items_per_plane = (OH + p.rows_per_item - 1) / p.rows_per_item;
  }
  plan_scratch(p, sa, nhwc);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastgan_cpu_upfirdn2d",
                                  [&] { launch<scalar_t>(p, x, y, nhwc); });
  return back_to_cl ? y.contiguous(at::MemoryFormat::ChannelsLast) : y;
}

}  // namespace fastgan_cpu

TORCH_LIBRARY_FRAGMENT(fastgan_cpu, m) {
  m.def("upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, "
        "int pady0, int pady1, bool flip_filter, float gain) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgan_cpu, CPU, m) { m.impl("upfirdn2d", &fastgan_cpu::upfirdn2d_cpu); }
