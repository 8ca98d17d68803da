// Centring pass of the streaming feature statistics (fastgan.metrics.FeatureStats):
// torch.ops.fastgan.cpu_center_rows_(dst, x, shift, sum) writes dst = float64(x) - shift row by row
// and adds the column sums of dst to sum, in one pass. Done with ATen it takes three (widen, subtract,
// sum); the rank-k update that follows is compute bound, so these passes are the statistics' overhead.
#include "common.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace fastgan_cpu {
namespace {

constexpr const char* kOp = "center_rows_";

// Rows [0, rows) of x: dst = x - shift, sum += dst (column sums).
template <typename T>
void center_block(const T* __restrict x, double* __restrict dst, const double* __restrict shift,
                  double* __restrict sum, int64_t rows, int64_t dim) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* xr = x + i * dim;
    double* dr = dst + i * dim;
    for (int64_t j = 0; j < dim; ++j) {
      const double v = static_cast<double>(xr[j]) - shift[j];
      dr[j] = v;
      sum[j] += v;
    }
  }
}

}  // namespace

void center_rows_cpu(at::Tensor& dst, const at::Tensor& x, const at::Tensor& shift, at::Tensor& sum) {
  TORCH_CHECK_VALUE(x.dim() == 2, kOp, ": x must be (N, D), got shape ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, kOp,
                   ": x must be float32 or float64, got ", x.scalar_type());
  const int64_t rows = x.size(0), dim = x.size(1);
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{dst, "dst"}, {shift, "shift"}, {sum, "sum"}}) {
    TORCH_CHECK_VALUE(t.device().is_cpu(), kOp, ": ", name, " must be a CPU tensor, got ", t.device());
    TORCH_CHECK_TYPE(t.scalar_type() == at::kDouble, kOp, ": ", name, " must be float64, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.is_contiguous(), kOp, ": ", name, " must be contiguous");
  }
  TORCH_CHECK_VALUE(x.device().is_cpu() && x.is_contiguous(), kOp, ": x must be a contiguous CPU tensor");
  TORCH_CHECK_VALUE(dst.dim() == 2 && dst.size(0) == rows && dst.size(1) == dim, kOp, ": dst must be (", rows,
                    ", ", dim, ") like x, got ", dst.sizes());
  TORCH_CHECK_VALUE(shift.dim() == 1 && shift.size(0) == dim, kOp, ": shift must be (", dim, "), got ",
                    shift.sizes());
  TORCH_CHECK_VALUE(sum.dim() == 1 && sum.size(0) == dim, kOp, ": sum must be (", dim, "), got ", sum.sizes());
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{x, "x"}, {shift, "shift"}, {sum, "sum"}})
    TORCH_CHECK_VALUE(at::get_overlap_status(dst, t) == at::MemOverlapStatus::No, kOp, ": dst must not overlap ",
                      name);
  TORCH_CHECK_VALUE(at::get_overlap_status(sum, shift) == at::MemOverlapStatus::No, kOp,
                    ": sum must not overlap shift");
  if (rows == 0 || dim == 0) return;
  double* dp = dst.data_ptr<double>();
  const double* sp = shift.data_ptr<double>();
  double* up = sum.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgan_cpu_center_rows", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    // One row block per thread; each block sums into its own vector (block 0 straight into sum).
    const int64_t chunks = std::min<int64_t>(at::get_num_threads(), rows);
    std::vector<double> partial(static_cast<size_t>((chunks - 1) * dim), 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
        double* acc = c == 0 ? up : partial.data() + (c - 1) * dim;
        center_block(xp + r0 * dim, dp + r0 * dim, sp, acc, r1 - r0, dim);
      }
    });
    for (int64_t c = 1; c < chunks; ++c)
      for (int64_t j = 0; j < dim; ++j) up[j] += partial[(c - 1) * dim + j];
  });
}

}  // namespace fastgan_cpu

TORCH_LIBRARY_FRAGMENT(fastgan_cpu, m) {
  m.def("center_rows_(Tensor(a!) dst, Tensor x, Tensor shift, Tensor(b!) sum) -> ()");
}

TORCH_LIBRARY_IMPL(fastgan_cpu, CPU, m) {
  m.impl("center_rows_", &fastgan_cpu::center_rows_cpu);
}
