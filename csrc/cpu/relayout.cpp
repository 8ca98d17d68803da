// Layout change between NCHW and NHWC (channels_last), optionally scaling each (n, c) plane on the way:
// torch.ops.fastgan.cpu_relayout(x, scale, channels_last). The cpu backend convolves channels_last but
// its FIR kernels run on NCHW planes, and the modulated convolution multiplies activations by the
// styles as it changes their layout. ATen does these as element-wise copies with one side strided by
// C or H*W, which runs at a few GB/s; here each image is a [C, HW] <-> [HW, C] transpose done in
// 32 x 32 tiles that stay in L1, so both sides stream.
#include "common.h"

#include <ATen/Parallel.h>

namespace fastgan_cpu {
namespace {

constexpr const char* kOp = "relayout";
constexpr int64_t kTile = 32;

// dst[j * ld_dst + i] = src[i * ld_src + j] * s[i] for i in [i0, i1), j in [j0, j1).
template <typename T>
void transpose_tile(const T* src, T* dst, const T* s, int64_t ld_src, int64_t ld_dst, int64_t i0, int64_t i1,
                    int64_t j0, int64_t j1) {
  T scale[kTile];
  for (int64_t i = i0; i < i1; ++i) scale[i - i0] = s ? s[i] : T(1);
  for (int64_t j = j0; j < j1; ++j) {
    T* d = dst + j * ld_dst;
    for (int64_t i = i0; i < i1; ++i) d[i] = src[i * ld_src + j] * scale[i - i0];
  }
}

}  // namespace

at::Tensor relayout_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& scale_in, bool channels_last) {
  check_float_tensor(x, kOp, "x");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, kOp,
                   ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, kOp, ": x must be [N, C, H, W], got ", x.sizes());
  const bool in_cl = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  TORCH_CHECK_VALUE(in_cl || x.is_contiguous(), kOp, ": x must be contiguous or channels_last, got strides ",
                    x.strides());
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  at::Tensor scale;
  if (scale_in.has_value() && scale_in->defined()) {
    check_float_tensor(*scale_in, kOp, "scale");
    TORCH_CHECK_VALUE(scale_in->numel() == n * c, kOp, ": scale must have N*C = ", n * c, " elements, got shape ",
                      scale_in->sizes());
    scale = scale_in->to(x.scalar_type()).contiguous();
  }
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(fmt));
  if (x.numel() == 0) return y;
  prefer_huge_pages(y);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgan_cpu_relayout", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* sp = scale.defined() ? scale.data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.data_ptr<scalar_t>();
    if (in_cl == channels_last) {   // same layout: a scaled copy, one (n, position) row or (n, c) plane per step
      const int64_t steps = in_cl ? n * hw : n * c, len = in_cl ? c : hw;
      at::parallel_for(0, steps, in_cl ? 64 : 1, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          const scalar_t* src = xp + k * len;
          scalar_t* dst = yp + k * len;
          if (in_cl) {
            const scalar_t* srow = sp ? sp + (k / hw) * c : nullptr;
            for (int64_t ch = 0; ch < len; ++ch) dst[ch] = src[ch] * (srow ? srow[ch] : scalar_t(1));
          } else {
            const scalar_t sc = sp ? sp[k] : scalar_t(1);
            for (int64_t i = 0; i < len; ++i) dst[i] = src[i] * sc;
          }
        }
      });
      return;
    }
    // Image i is a [rows, cols] matrix in x and [cols, rows] in y: rows = C for NCHW input, HW otherwise.
    const int64_t rows = in_cl ? hw : c, cols = in_cl ? c : hw;
    const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
    at::parallel_for(0, n * tr, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t img = t / tr, i0 = (t % tr) * kTile, i1 = std::min(rows, i0 + kTile);
        const scalar_t* src = xp + img * c * hw;
        scalar_t* dst = yp + img * c * hw;
        for (int64_t jt = 0; jt < tc; ++jt) {
          const int64_t j0 = jt * kTile, j1 = std::min(cols, j0 + kTile);
          if (in_cl) {   // rows = positions, cols = channels: the scale runs along j
            for (int64_t j = j0; j < j1; ++j) {
              const scalar_t s = sp ? sp[img * c + j] : scalar_t(1);
              scalar_t* d = dst + j * rows;
              for (int64_t i = i0; i < i1; ++i) d[i] = src[i * cols + j] * s;
            }
          } else {
            transpose_tile(src, dst, sp ? sp + img * c : nullptr, cols, rows, i0, i1, j0, j1);
          }
        }
      }
    });
  });
  return y;
}

}  // namespace fastgan_cpu

TORCH_LIBRARY_FRAGMENT(fastgan_cpu, m) {
  m.def("relayout(Tensor x, Tensor? scale, bool channels_last) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgan_cpu, CPU, m) {
  m.impl("relayout", &fastgan_cpu::relayout_cpu);
}
