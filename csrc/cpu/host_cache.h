// Opt-in arena for large CPU tensors (host_cache.cpp); bound in bindings.cpp, driven by
// fastgan/backends/host_cache.py. Nothing here touches torch's CPU allocator until arena_open().
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastgan_cpu {

struct HostCacheStats {
  bool enabled;          // an arena is open (in some thread)
  bool installed;        // c10's CPU allocator is the arena right now
  size_t cached_bytes;   // freed blocks kept for reuse
  size_t live_bytes;     // arena blocks handed out and not yet freed
  size_t limit_bytes;    // most bytes of freed blocks the arena keeps
  uint64_t hits, misses;
};

// Installs the arena as c10's CPU allocator for the calling thread's large allocations; errors when an
// arena is already open or a higher-priority allocator refuses the swap.
void host_cache_open(size_t limit_bytes);
// Restores the previous allocator and unmaps every cached block; blocks still in use are unmapped
// when freed. A no-op when no arena is open.
void host_cache_close();
// While on, the owner thread's allocations go to the previous allocator (cached blocks stay); returns
// the previous setting. Closing the arena clears it.
bool host_cache_pause(bool on);
void host_cache_set_limit(size_t bytes);
void host_cache_empty();
HostCacheStats host_cache_stats();

}  // namespace fastgan_cpu
