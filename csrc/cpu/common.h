// Shared helpers of the fastgan CPU kernels: run-time ISA selection, accumulation types,
// element conversions and argument checks.
//
// Every kernel header (*_kernels.h) is included once per ISA level inside its own namespace
// (fastgan_cpu::scalar, ::avx2, ::avx512) under a `#pragma GCC target` region, so the same source
// is compiled for each instruction set and the caller picks one at run time (see FG_ISA_CALL).
// Kernel headers include nothing themselves and call no out-of-line std:: templates, so no function
// compiled for a higher ISA can be merged with (and later run as) a baseline one.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#ifdef __linux__
#include <sys/mman.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define FG_X86_MULTI_ISA 1
#include <immintrin.h>  // F16C conversions in the avx2/avx512 copies (declared for every target)
#else
#define FG_X86_MULTI_ISA 0
#endif

// Force inlining of small helpers into the vectorised loops of each ISA copy.
#define FG_INLINE inline __attribute__((always_inline))

namespace fastgan_cpu {

// ---- ISA levels -------------------------------------------------------------------------------
enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa i) {
  switch (i) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

// The best level this CPU (and OS) supports; `__builtin_cpu_supports` also checks that the OS
// saves the wide registers.
inline Isa isa_detected() {
#if FG_X86_MULTI_ISA
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::scalar;
}

inline Isa isa_from_name(const std::string& s, bool* ok) {
  *ok = true;
  if (s == "avx512") return Isa::avx512;
  if (s == "avx2") return Isa::avx2;
  if (s == "scalar") return Isa::scalar;
  *ok = false;
  return Isa::scalar;
}

// Initial level: the detected one, lowered (never raised) by FASTGAN_CPU_ISA=scalar|avx2|avx512.
inline int isa_initial() {
  Isa best = isa_detected();
  const char* env = std::getenv("FASTGAN_CPU_ISA");
  if (env && *env) {
    bool ok;
    Isa want = isa_from_name(env, &ok);
    if (ok && static_cast<int>(want) < static_cast<int>(best)) best = want;
  }
  return static_cast<int>(best);
}

inline std::atomic<int>& isa_state() {
  static std::atomic<int> level{isa_initial()};
  return level;
}

inline Isa isa_current() { return static_cast<Isa>(isa_state().load(std::memory_order_relaxed)); }

// Lower or restore the level (tests use it to run every compiled path); refuses levels above the
// detected one. Returns the previous level.
inline Isa isa_set(const std::string& name) {
  bool ok;
  Isa want = isa_from_name(name, &ok);
  TORCH_CHECK_VALUE(ok, "fastgan._C.set_isa: level must be 'scalar', 'avx2' or 'avx512', got '", name, "'");
  TORCH_CHECK_VALUE(static_cast<int>(want) <= static_cast<int>(isa_detected()), "fastgan._C.set_isa: this CPU ",
                    "supports at most '", isa_name(isa_detected()), "', cannot select '", name, "'");
  return static_cast<Isa>(isa_state().exchange(static_cast<int>(want)));
}

// FG_ISA_CALL(fn, args...) calls the kernel `fn` of the current ISA namespace.
#if FG_X86_MULTI_ISA
#define FG_ISA_CALL(fn, ...)                                                          \
  do {                                                                                \
    switch (::fastgan_cpu::isa_current()) {                                           \
      case ::fastgan_cpu::Isa::avx512: ::fastgan_cpu::avx512::fn(__VA_ARGS__); break; \
      case ::fastgan_cpu::Isa::avx2: ::fastgan_cpu::avx2::fn(__VA_ARGS__); break;     \
      default: ::fastgan_cpu::scalar::fn(__VA_ARGS__); break;                         \
    }                                                                                 \
  } while (0)
#else
#define FG_ISA_CALL(fn, ...) ::fastgan_cpu::scalar::fn(__VA_ARGS__)
#endif

// ---- element types ----------------------------------------------------------------------------
// Half types accumulate in float, float in float, double in double.
template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using acc_t = typename AccOf<T>::type;

// ---- argument checks --------------------------------------------------------------------------
inline bool is_float_type(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

inline void check_float_tensor(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " must be a tensor, got None");
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK_TYPE(is_float_type(t.scalar_type()), op, ": ", name,
                   " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
}

// Ask the kernel to back a large, freshly allocated output with transparent huge pages before it
// is first written: a fresh multi-MB tensor is a new mapping, and faulting it in 4 KiB pages costs
// more than the kernel writing it. A hint only (no-op where THP is off or the pages already exist).
inline void prefer_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const size_t bytes = t.numel() * t.element_size();
  if (bytes < 4 * kHuge) return;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(t.data_ptr()) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(t.data_ptr()) + bytes) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// Scratch memory of one thread, 64-byte aligned.
struct Scratch {
  explicit Scratch(size_t bytes) : ptr_(static_cast<char*>(std::aligned_alloc(64, round(bytes)))) {
    TORCH_CHECK(ptr_ != nullptr, "fastgan cpu kernels: out of memory allocating ", bytes, " bytes of scratch");
  }
  ~Scratch() { std::free(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  char* get() const { return ptr_; }

 private:
  static size_t round(size_t b) { return ((b ? b : 1) + 63) / 64 * 64; }
  char* ptr_;
};

}  // namespace fastgan_cpu
