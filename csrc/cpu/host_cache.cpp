// An opt-in arena for large CPU tensors: while a thread holds it open, that thread's allocations of
// 1 MiB and more reuse blocks it freed earlier instead of faulting in fresh pages.
//
// Why: a StyleGAN forward frees and re-creates tensors of tens to hundreds of MB at every layer, and
// glibc serves each from a fresh mapping, so every use pays page faults plus kernel zeroing of the
// whole block. Reusing freed blocks turns that into cache-warm rewrites.
//
// Safety rules, since c10 keeps one process-wide CPU allocator:
//  - torch's allocator is swapped only between host_cache_open() and host_cache_close(), which the
//    Python layer calls for an explicit `with host_cache.arena():` and nothing else;
//  - one arena at a time, owned by the thread that opened it; allocations from every other thread
//    (DataLoader threads, a second model in a server) go straight to the previous allocator, even
//    while the arena is installed, and so do the owner's own while it has paused the arena;
//  - every block carries this arena's deleter, so a tensor stays valid after the arena closes and
//    whichever thread frees it; a block freed while no arena is open is unmapped at once;
//  - close unmaps every cached block, so the footprint beyond live tensors ends with the scope;
//  - fork: the child starts with no arena (allocator restored, cached blocks unmapped from the
//    child's copy of the address space); pthread_atfork holds the lock across fork() so the child
//    never inherits a half-updated free list.
//
// Blocks are anonymous mappings rounded to 2 MiB (a transparent huge page), 2 MiB aligned; a request
// takes the smallest cached block that wastes at most 1/8 of it. One mutex guards the free list and
// the live map; it is never held across a system call that maps or unmaps memory.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "host_cache.h"

namespace fastgan_cpu {
namespace {

constexpr size_t kGranule = size_t(2) << 20;
constexpr size_t kMinBytes = size_t(1) << 20;
// c10 installs an allocator only if its priority is at least the current one's; install and restore
// use the same value.
constexpr uint8_t kPriority = 0;

using Block = std::pair<size_t, void*>;   // (bytes, address)

size_t granules(size_t n) { return (n + kGranule - 1) / kGranule * kGranule; }

// A fresh private anonymous mapping of `bytes` (a multiple of kGranule) on a kGranule boundary:
// map one granule more, then unmap the unaligned head and the tail.
void* map_aligned(size_t bytes) {
  const size_t span = bytes + kGranule;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (lo + kGranule - 1) & ~uintptr_t(kGranule - 1);
  const size_t head = start - lo;
  const size_t tail = span - head - bytes;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<void*>(start + bytes), tail);
#if defined(MADV_HUGEPAGE)
  madvise(reinterpret_cast<void*>(start), bytes, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void*>(start);
}

void unmap_all(const std::vector<Block>& blocks) {
  for (const Block& b : blocks) munmap(b.second, b.first);
}

class Arena final : public c10::Allocator {
 public:
  static Arena& get() {
    static Arena* one = new Arena();   // leaked on purpose: tensors may be freed during static teardown
    return *one;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n >= kMinBytes && !paused_.load(std::memory_order_relaxed) &&
        owner_.load(std::memory_order_acquire) == std::this_thread::get_id()) {
      void* p = acquire(n);
      return {p, p, &Arena::free_fn, c10::Device(c10::DeviceType::CPU)};
    }
    return prev_.load(std::memory_order_acquire)->allocate(n);
  }

  c10::DeleterFnPtr raw_deleter() const override { return &Arena::free_fn; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void open(size_t limit) {
    std::lock_guard<std::mutex> guard(mu_);
    TORCH_CHECK(owner_.load() == std::thread::id(), "fastgan host cache: an arena is already open");
    c10::Allocator* current = c10::GetCPUAllocator();
    if (current != this) {
      prev_.store(current, std::memory_order_release);
      prev_free_ = current->raw_deleter();
    }
    c10::SetCPUAllocator(this, kPriority);
    TORCH_CHECK(c10::GetCPUAllocator() == this,
                "fastgan host cache: torch's CPU allocator was set with a higher priority by someone "
                "else; the arena cannot be installed");
    limit_ = limit;
    owner_.store(std::this_thread::get_id(), std::memory_order_release);
  }

  void close() {
    std::vector<Block> drop;
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (owner_.load() == std::thread::id()) return;
      detach_locked(drop);
    }
    unmap_all(drop);
  }

  // Only the owner thread calls this (the Python layer checks), so a plain exchange suffices.
  bool pause(bool on) { return paused_.exchange(on, std::memory_order_relaxed); }

  void set_limit(size_t bytes) {
    std::vector<Block> drop;
    {
      std::lock_guard<std::mutex> guard(mu_);
      limit_ = bytes;
      shrink_locked(limit_, drop);
    }
    unmap_all(drop);
  }

  void empty() {
    std::vector<Block> drop;
    {
      std::lock_guard<std::mutex> guard(mu_);
      shrink_locked(0, drop);
    }
    unmap_all(drop);
  }

  HostCacheStats stats() {
    std::lock_guard<std::mutex> guard(mu_);
    return {owner_.load() != std::thread::id(), c10::GetCPUAllocator() == this, cached_, live_bytes_,
            limit_, hits_, misses_};
  }

 private:
  Arena() { pthread_atfork(&Arena::fork_prepare, &Arena::fork_parent, &Arena::fork_child); }

  static void free_fn(void* p) { get().release(p); }

  static void fork_prepare() { get().mu_.lock(); }
  static void fork_parent() { get().mu_.unlock(); }
  static void fork_child() {   // the only thread of the child is the one that forked; it holds mu_
    Arena& a = get();
    std::vector<Block> drop;
    a.detach_locked(drop);
    a.mu_.unlock();
    unmap_all(drop);
  }

  // Closes the arena under the lock: restores the previous allocator (unless someone replaced ours
  // meanwhile) and moves every cached block to `drop`.
  void detach_locked(std::vector<Block>& drop) {
    owner_.store(std::thread::id(), std::memory_order_release);
    paused_.store(false, std::memory_order_relaxed);
    if (c10::GetCPUAllocator() == this) c10::SetCPUAllocator(prev_.load(), kPriority);
    shrink_locked(0, drop);
  }

  void shrink_locked(size_t keep, std::vector<Block>& drop) {   // largest blocks go first
    while (cached_ > keep && !free_.empty()) {
      auto last = std::prev(free_.end());
      drop.push_back(*last);
      cached_ -= last->first;
      free_.erase(last);
    }
  }

  void* acquire(size_t n) {
    const size_t bytes = granules(n);
    {
      std::lock_guard<std::mutex> guard(mu_);
      auto fit = free_.lower_bound(bytes);
      if (fit != free_.end() && fit->first - bytes <= bytes / 8) {
        const Block b = *fit;
        free_.erase(fit);
        cached_ -= b.first;
        live_.emplace(b.second, b.first);
        live_bytes_ += b.first;
        ++hits_;
        return b.second;
      }
      ++misses_;
    }
    void* p = map_aligned(bytes);
    if (p == nullptr) {   // the cache may hold what the system lacks: give it back and retry once
      empty();
      p = map_aligned(bytes);
    }
    TORCH_CHECK(p != nullptr, "fastgan host cache: out of memory mapping ", bytes, " bytes");
    std::lock_guard<std::mutex> guard(mu_);
    live_.emplace(p, bytes);
    live_bytes_ += bytes;
    return p;
  }

  void release(void* p) {
    if (p == nullptr) return;
    std::unique_lock<std::mutex> guard(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) {   // from the previous allocator, freed through raw_deleter()
      const c10::DeleterFnPtr prev_free = prev_free_;
      guard.unlock();
      TORCH_INTERNAL_ASSERT(prev_free != nullptr, "fastgan host cache: freeing an unknown pointer");
      prev_free(p);
      return;
    }
    const size_t bytes = it->second;
    live_.erase(it);
    live_bytes_ -= bytes;
    if (owner_.load() != std::thread::id() && cached_ + bytes <= limit_) {
      free_.emplace(bytes, p);
      cached_ += bytes;
      return;
    }
    guard.unlock();
    munmap(p, bytes);
  }

  std::mutex mu_;
  std::atomic<std::thread::id> owner_{};
  std::atomic<bool> paused_{false};   // the owner's allocations bypass the arena for now
  std::atomic<c10::Allocator*> prev_{nullptr};
  c10::DeleterFnPtr prev_free_ = nullptr;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  size_t cached_ = 0, live_bytes_ = 0, limit_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace

void host_cache_open(size_t limit_bytes) { Arena::get().open(limit_bytes); }
void host_cache_close() { Arena::get().close(); }
bool host_cache_pause(bool on) { return Arena::get().pause(on); }
void host_cache_set_limit(size_t bytes) { Arena::get().set_limit(bytes); }
void host_cache_empty() { Arena::get().empty(); }
HostCacheStats host_cache_stats() { return Arena::get().stats(); }

}  // namespace fastgan_cpu
