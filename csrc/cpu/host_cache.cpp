// A caching host allocator for large CPU tensors, installed in place of c10's CPU allocator while
// fastgan runs a network on the cpu backend.
//
// Why: a StyleGAN forward frees and re-creates tensors of tens to hundreds of MB at every layer. glibc
// serves each from a fresh mmap, so every use pays page faults and kernel zeroing of the whole block
// (measured: system time above user time for a StyleGAN2 256x256 forward). Keeping freed blocks and
// handing them out again, as the CUDA caching allocator does for device memory, turns those faults
// into cache-warm reuse.
//
// Policy: requests below kMinBytes go to the allocator that was installed before (c10's default).
// Larger ones are rounded up to a multiple of kGranule (2 MiB, a transparent huge page), served best
// fit from the free blocks (a block at most 1/8 larger than the request), else freshly allocated,
// 2 MiB aligned and advised for huge pages. Freed blocks are kept while the cache holds at most
// `limit` bytes; beyond that they go back to the system. Thread safe (one mutex).
#include <torch/extension.h>

#include <c10/core/CPUAllocator.h>
#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "host_cache.h"

namespace fastgan_cpu {
namespace {

constexpr size_t kGranule = size_t(2) << 20;
constexpr size_t kMinBytes = size_t(1) << 20;

class HostCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kMinBytes) {
      return base_->allocate(n);
    }
    void* p = take(n);
    return {p, p, &HostCache::deleter, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &HostCache::deleter; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  static HostCache& instance() {
    static HostCache* cache = new HostCache();   // never destroyed: tensors may outlive static teardown
    return *cache;
  }

  bool set_enabled(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool was = enabled_;
    if (on && !enabled_) {
      base_ = c10::GetCPUAllocator();
      base_deleter_ = base_->raw_deleter();
      c10::SetCPUAllocator(this, kPriority);
      enabled_ = c10::GetCPUAllocator() == this;   // false if another allocator holds a higher priority
    } else if (!on && enabled_) {
      c10::SetCPUAllocator(base_, kPriority);
      enabled_ = false;
    }
    return was;
  }

  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    trim_locked(limit_);
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    trim_locked(0);
  }

  HostCacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {enabled_, cached_, live_bytes_, limit_, hits_, misses_};
  }

 private:
  // Any priority works as long as enable and disable use the same one: SetCPUAllocator only installs
  // an allocator whose priority is at least that of the current one.
  static constexpr uint8_t kPriority = 0;

  static void deleter(void* p) { instance().give_back(p); }

  void* take(size_t n) {
    const size_t size = (n + kGranule - 1) / kGranule * kGranule;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 8) {
        void* p = it->second;
        const size_t got = it->first;
        free_.erase(it);
        cached_ -= got;
        live_.emplace(p, got);
        live_bytes_ += got;
        ++hits_;
        return p;
      }
      ++misses_;
    }
    void* p = std::aligned_alloc(kGranule, size);
    if (p == nullptr) {   // memory may be parked in the cache: release it and try once more
      empty();
      p = std::aligned_alloc(kGranule, size);
    }
    TORCH_CHECK(p != nullptr, "fastgan host cache: out of memory allocating ", n, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, size, MADV_HUGEPAGE);
#endif
    std::lock_guard<std::mutex> lock(mu_);
    live_.emplace(p, size);
    live_bytes_ += size;
    return p;
  }

  void give_back(void* p) {
    if (p == nullptr) return;
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) {   // a small block from the base allocator, freed through raw_deleter()
      const c10::DeleterFnPtr base = base_deleter_;
      lock.unlock();
      TORCH_INTERNAL_ASSERT(base != nullptr, "fastgan host cache: freeing an unknown pointer");
      base(p);
      return;
    }
    const size_t size = it->second;
    live_.erase(it);
    live_bytes_ -= size;
    if (cached_ + size <= limit_) {
      free_.emplace(size, p);
      cached_ += size;
    } else {
      lock.unlock();
      std::free(p);
    }
  }

  void trim_locked(size_t keep) {   // largest blocks first: they are the most expensive to keep
    while (cached_ > keep && !free_.empty()) {
      auto it = std::prev(free_.end());
      cached_ -= it->first;
      std::free(it->second);
      free_.erase(it);
    }
  }

  std::mutex mu_;
  bool enabled_ = false;
  c10::Allocator* base_ = nullptr;
  c10::DeleterFnPtr base_deleter_ = nullptr;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  size_t cached_ = 0, live_bytes_ = 0, limit_ = size_t(4) << 30;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace

bool host_cache_set_enabled(bool on) { return HostCache::instance().set_enabled(on); }
void host_cache_set_limit(size_t bytes) { HostCache::instance().set_limit(bytes); }
void host_cache_empty() { HostCache::instance().empty(); }
HostCacheStats host_cache_stats() { return HostCache::instance().stats(); }

}  // namespace fastgan_cpu
