// Compiles the kernel header named by FG_KERNELS once per ISA level, each copy in its own
// namespace under its own target options (see common.h). Usage:
//   #define FG_KERNELS "foo_kernels.h"
//   #include "isa_compile.h"
// No include guard: each .cpp includes it once per kernel header.
//
// All copies are built with -fno-trapping-math (lets GCC if-convert and vectorise the select-style
// activations and clamps; fastgan never traps on FP exceptions) and -ffp-contract=fast (FMA).

#pragma GCC push_options
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")

#define FG_ISA_NS scalar
#define FG_F16C 0
#include FG_KERNELS
#undef FG_F16C
#undef FG_ISA_NS

#if FG_X86_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,popcnt")
#define FG_ISA_NS avx2
#define FG_F16C 1
#include FG_KERNELS
#undef FG_F16C
#undef FG_ISA_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt")
#define FG_ISA_NS avx512
#define FG_F16C 1
#include FG_KERNELS
#undef FG_F16C
#undef FG_ISA_NS
#pragma GCC pop_options
#endif

#pragma GCC pop_options
#undef FG_KERNELS
