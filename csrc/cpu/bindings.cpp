// The single Python module init of fastgan._C. The ops themselves register with the dispatcher
// (TORCH_LIBRARY_FRAGMENT in each .cpp) and are called as torch.ops.fastgan_cpu.*; importing this
// module loads them.
#include <torch/extension.h>

#include "common.h"
#include "host_cache.h"

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
  m.def("host_cache_set_enabled", &fastgan_cpu::host_cache_set_enabled, pybind11::arg("on"),
        "Install (True) or remove (False) the caching host allocator as torch's CPU allocator; "
        "returns the previous state.");
  m.def("host_cache_set_limit", &fastgan_cpu::host_cache_set_limit, pybind11::arg("bytes"),
        "Most bytes of freed blocks the cache keeps (releases the excess now).");
  m.def("host_cache_empty", &fastgan_cpu::host_cache_empty, "Release every cached block to the system.");
  m.def("host_cache_stats", [] {
          const auto s = fastgan_cpu::host_cache_stats();
          pybind11::dict d;
          d["enabled"] = s.enabled;
          d["cached_bytes"] = s.cached_bytes;
          d["live_bytes"] = s.live_bytes;
          d["limit_bytes"] = s.limit_bytes;
          d["hits"] = s.hits;
          d["misses"] = s.misses;
          return d;
        }, "Counters of the caching host allocator.");
}
