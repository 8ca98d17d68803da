// The single Python module init of fastgan._C. The ops themselves register with the dispatcher
// (TORCH_LIBRARY_FRAGMENT in each .cpp) and are called as torch.ops.fastgan.cpu_*; importing this
// module loads them.
#include <torch/extension.h>

#include "common.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgan CPU kernels (OpenMP + run-time selected SIMD); ops live in torch.ops.fastgan";
  m.def("isa", [] { return std::string(fastgan_cpu::isa_name(fastgan_cpu::isa_current())); },
        "SIMD level the kernels dispatch to now: 'avx512', 'avx2' or 'scalar' (compiler baseline).");
  m.def("isa_detected", [] { return std::string(fastgan_cpu::isa_name(fastgan_cpu::isa_detected())); },
        "Best SIMD level this CPU supports.");
  m.def("set_isa", [](const std::string& level) {
          return std::string(fastgan_cpu::isa_name(fastgan_cpu::isa_set(level)));
        }, pybind11::arg("level"),
        "Select 'scalar', 'avx2' or 'avx512' (at most isa_detected()); returns the previous level. "
        "The FASTGAN_CPU_ISA environment variable lowers the initial level the same way.");
}
