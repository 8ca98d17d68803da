// Caching host allocator for large CPU tensors (host_cache.cpp); bound in bindings.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastgan_cpu {

struct HostCacheStats {
  bool enabled;
  size_t cached_bytes;   // freed blocks kept for reuse
  size_t live_bytes;     // blocks handed out and not yet freed
  size_t limit_bytes;    // most bytes the cache keeps
  uint64_t hits, misses;
};

// Installs (true) or removes (false) the cache as c10's CPU allocator; returns the previous state.
// Blocks handed out stay valid either way: their deleter returns them to the cache.
bool host_cache_set_enabled(bool on);
void host_cache_set_limit(size_t bytes);
void host_cache_empty();
HostCacheStats host_cache_stats();

}  // namespace fastgan_cpu
