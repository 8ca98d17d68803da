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
  using release_gil = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("host_cache_open", &fastgan_cpu::host_cache_open, pybind11::arg("limit_bytes"), release_gil(),
        "Install the arena as torch's CPU allocator for the calling thread's large tensors, keeping at "
        "most limit_bytes of freed blocks (fastgan.backends.host_cache.arena is the supported entry).");
  m.def("host_cache_close", &fastgan_cpu::host_cache_close, release_gil(),
        "Restore torch's previous CPU allocator and unmap every cached block (no-op when closed).");
  m.def("host_cache_pause", &fastgan_cpu::host_cache_pause, pybind11::arg("on"),
        "While on, the owner thread's allocations bypass the open arena; returns the previous setting.");
  m.def("host_cache_set_limit", &fastgan_cpu::host_cache_set_limit, pybind11::arg("bytes"), release_gil(),
        "Most bytes of freed blocks the arena keeps (unmaps the excess now).");
  m.def("host_cache_empty", &fastgan_cpu::host_cache_empty, release_gil(),
        "Unmap every cached block (blocks in use are unaffected).");
  m.def("host_cache_stats", [] {
          const auto s = fastgan_cpu::host_cache_stats();
          pybind11::dict d;
          d["enabled"] = s.enabled;
          d["installed"] = s.installed;
          d["cached_bytes"] = s.cached_bytes;
          d["live_bytes"] = s.live_bytes;
          d["limit_bytes"] = s.limit_bytes;
          d["hits"] = s.hits;
          d["misses"] = s.misses;
          return d;
        }, "Counters of the host-cache arena.");
}
