// A small CPU emulation of the CUDA execution model, enough to run fastgan's kernels unchanged on
// the host for testing (tests/cuda_emu.py builds them with it; see there).
//
// * Every CUDA thread of a block is a ucontext fiber; a block runs its fibers round-robin on one OS
//   thread. __syncthreads() and warp shuffles are cooperative barriers, so shared-memory races that
//   respect the barriers behave as on the GPU.
// * Blocks run one after another; atomics are plain read-modify-writes.
// * Dynamic shared memory is a fresh buffer per block filled with 0xFF bytes (NaN for float and
//   double), with a NaN guard zone after it: a kernel reading a sample it never staged, or reading
//   past its allocation, produces NaN in its output.
// * Launch checks of the real hardware: at most 1024 threads per block, grid y/z at most 65535,
//   dynamic shared memory at most 48 KiB (no opt-in); a violation is reported by cudaGetLastError.
//
// Included before the kernel sources; the test rewrites `k<<<cfg>>>(args)` into
// `::emu::Launch(cfg).run(k, args)` and `extern __shared__ ... name[];` into a pointer from
// ::emu::dynamic_smem().
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)

using std::max;
using std::min;

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

namespace emu {

void syncthreads();
void syncwarp();
unsigned char* dynamic_smem();
void exchange(const void* value, void* out, int size, int src_lane_delta);  // warp shuffle-down of raw bytes

// One launch: checks the configuration like the hardware, then runs every block.
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr)
      : grid_(grid), block_(block), smem_(smem) {
    (void)stream;
  }
  template <typename... KArgs, typename... Args>
  void run(void (*kernel)(KArgs...), Args&&... args) {
    run_grid([&] { kernel(args...); });
  }

 private:
  void run_grid(const std::function<void()>& body);
  dim3 grid_, block_;
  size_t smem_;
};

}  // namespace emu

#define __syncthreads() ::emu::syncthreads()

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
  (void)mask;
  T out;
  ::emu::exchange(&value, &out, static_cast<int>(sizeof(T)), static_cast<int>(delta));
  return out;
}

inline float atomicAdd(float* address, float value) {
  const float old = *address;
  *address = old + value;
  return old;
}
inline double atomicAdd(double* address, double value) {
  const double old = *address;
  *address = old + value;
  return old;
}
