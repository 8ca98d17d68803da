// Runtime of the CUDA emulation (tests/cuda_emu.h) and the flat C entry points that
// tests/cuda_emu.py calls through ctypes. The entry points fill the parameter structs of
// csrc/cuda/fastgan_cuda.h and call the real launchers.
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda_emu.h"
#include "fastgan_cuda.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace emu {
namespace {

enum class State { kRunnable, kBlockBarrier, kWarpBarrier, kDone };

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  State state = State::kDone;
  uint3 tid;
};

constexpr size_t kStack = 256 * 1024;
constexpr size_t kGuard = 4096;      // NaN bytes after the dynamic shared memory
constexpr size_t kSmemLimit = 48 * 1024;

std::vector<Fiber> fibers;
ucontext_t scheduler;
int current = -1;
const std::function<void()>* body = nullptr;
std::vector<unsigned char> smem;
std::vector<unsigned char> shuffle_slots;   // 8 bytes per thread
cudaError_t last_error = cudaSuccess;
int sm_count = 4;
int last_launch[6] = {0, 0, 0, 0, 0, 0};   // block.x, block.y, smem bytes, grid.x, grid.y, grid.z

void entry() {
  (*body)();
  fibers[current].state = State::kDone;
  swapcontext(&fibers[current].ctx, &scheduler);
}

void wait(State s) {
  fibers[current].state = s;
  swapcontext(&fibers[current].ctx, &scheduler);
}

int linear_tid() { return static_cast<int>(threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y); }

// Runs every thread of one block to completion, releasing barriers when all their threads wait.
void run_block(int nthreads) {
  if (static_cast<int>(fibers.size()) < nthreads) fibers.resize(nthreads);
  for (int i = 0; i < nthreads; ++i) {
    Fiber& f = fibers[i];
    if (f.stack.empty()) f.stack.resize(kStack);
    f.tid = uint3{static_cast<unsigned>(i % blockDim.x), static_cast<unsigned>(i / blockDim.x % blockDim.y),
                  static_cast<unsigned>(i / (blockDim.x * blockDim.y))};
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, entry, 0);
    f.state = State::kRunnable;
  }
  for (;;) {
    for (int i = 0; i < nthreads; ++i) {
      if (fibers[i].state != State::kRunnable) continue;
      current = i;
      threadIdx = fibers[i].tid;
      swapcontext(&scheduler, &fibers[i].ctx);
    }
    bool all_done = true, released = false;
    for (int w = 0; w * 32 < nthreads; ++w) {  // a warp barrier opens when every live lane waits at it
      bool waiting = false, others = false;
      for (int i = w * 32; i < std::min(nthreads, w * 32 + 32); ++i) {
        waiting |= fibers[i].state == State::kWarpBarrier;
        others |= fibers[i].state == State::kRunnable || fibers[i].state == State::kBlockBarrier;
      }
      if (waiting && !others) {
        for (int i = w * 32; i < std::min(nthreads, w * 32 + 32); ++i)
          if (fibers[i].state == State::kWarpBarrier) fibers[i].state = State::kRunnable;
        released = true;
      }
    }
    if (released) continue;
    bool block_wait = false;
    for (int i = 0; i < nthreads; ++i) {
      all_done &= fibers[i].state == State::kDone;
      block_wait |= fibers[i].state == State::kBlockBarrier;
    }
    if (all_done) return;
    bool stuck = false;
    for (int i = 0; i < nthreads; ++i) stuck |= fibers[i].state == State::kWarpBarrier;
    if (stuck || !block_wait) {
      std::fprintf(stderr, "cuda_emu: deadlock (threads wait at different barriers)\n");
      std::abort();
    }
    for (int i = 0; i < nthreads; ++i)
      if (fibers[i].state == State::kBlockBarrier) fibers[i].state = State::kRunnable;
  }
}

}  // namespace

void syncthreads() { wait(State::kBlockBarrier); }
void syncwarp() { wait(State::kWarpBarrier); }
unsigned char* dynamic_smem() { return smem.data(); }

void exchange(const void* value, void* out, int size, int delta) {
  const int t = linear_tid(), lane = t % 32;
  std::memcpy(&shuffle_slots[8 * t], value, size);
  syncwarp();
  const int src = lane + delta < 32 && t + delta < static_cast<int>(blockDim.x * blockDim.y * blockDim.z) ? t + delta : t;
  std::memcpy(out, &shuffle_slots[8 * src], size);
  syncwarp();
}

void Launch::run_grid(const std::function<void()>& kernel_body) {
  const long long threads = static_cast<long long>(block_.x) * block_.y * block_.z;
  last_launch[0] = block_.x; last_launch[1] = block_.y; last_launch[2] = static_cast<int>(smem_);
  last_launch[3] = grid_.x; last_launch[4] = grid_.y; last_launch[5] = grid_.z;
  if (threads < 1 || threads > 1024 || grid_.x < 1 || grid_.y < 1 || grid_.z < 1 || grid_.y > 65535 ||
      grid_.z > 65535 || smem_ > kSmemLimit) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  gridDim = grid_;
  blockDim = block_;
  body = &kernel_body;
  shuffle_slots.assign(8 * threads, 0);
  for (unsigned z = 0; z < grid_.z; ++z)
    for (unsigned y = 0; y < grid_.y; ++y)
      for (unsigned x = 0; x < grid_.x; ++x) {
        blockIdx = uint3{x, y, z};
        smem.assign(smem_ + kGuard, 0xFF);
        run_block(static_cast<int>(threads));
      }
  body = nullptr;
}

}  // namespace emu

// The CUDA runtime calls the launchers make (no libcudart is linked).
extern "C" {
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  (void)device;
  *value = attr == cudaDevAttrMultiProcessorCount ? emu::sm_count : 0;
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : error == cudaErrorInvalidConfiguration ? "invalid configuration argument"
                                                                                    : "emulated CUDA error";
}
}

// ---- entry points for ctypes ----
using namespace fastgan_cuda;

extern "C" {

// ints: n, c, in_h, in_w, out_h, out_w, up_x, up_y, down_x, down_y, pad_x0, pad_y0, f_w, f_h
int emu_upfirdn2d(const void* x, void* y, const void* f, int dtype, const int64_t* x_stride, const int64_t* y_stride,
                  const int* ints) {
  Upfirdn2dParams p{};
  p.x = x; p.y = y; p.f = f;
  p.dtype = static_cast<DType>(dtype);
  for (int d = 0; d < 4; ++d) {
    p.x_stride[d] = x_stride[d];
    p.y_stride[d] = y_stride[d];
  }
  p.n = ints[0]; p.c = ints[1]; p.in_h = ints[2]; p.in_w = ints[3]; p.out_h = ints[4]; p.out_w = ints[5];
  p.up_x = ints[6]; p.up_y = ints[7]; p.down_x = ints[8]; p.down_y = ints[9];
  p.pad_x0 = ints[10]; p.pad_y0 = ints[11]; p.f_w = ints[12]; p.f_h = ints[13];
  return upfirdn2d_launch(p, nullptr);
}

int emu_bias_act(const void* x, const void* b, const void* dy, const void* g, void* out, int dtype, int64_t numel,
                 int64_t bias_stride, int64_t bias_size, int act, double alpha, double gain, double clamp, int mode) {
  BiasActParams p{};
  p.x = x; p.b = b; p.dy = dy; p.g = g; p.out = out;
  p.dtype = static_cast<DType>(dtype);
  p.numel = numel; p.bias_stride = bias_stride; p.bias_size = bias_size;
  p.act = act; p.alpha = alpha; p.gain = gain; p.clamp = clamp;
  return bias_act_launch(p, static_cast<BiasActMode>(mode), nullptr);
}

int emu_bias_grad_reduce(const void* dx, int dtype, int64_t outer, int64_t channels, int64_t inner, void* db) {
  return bias_grad_reduce_launch(dx, static_cast<DType>(dtype), outer, channels, inner, db, nullptr);
}

// ints: n, c, in_h, in_w, mid_h, mid_w, out_h, out_w, up, down, pad1_x0, pad1_y0, pad2_x0, pad2_y0,
//       f1_w, f1_h, f2_w, f2_h, signs_w, f1_separable, f2_separable
int emu_filtered_lrelu(const void* x, const void* b, void* y, const void* f1, const void* f2, const uint8_t* signs_in,
                       uint8_t* signs_out, int dtype, const int64_t* x_stride, const int64_t* y_stride, const int* ints,
                       double gain, double slope, double clamp) {
  FilteredLreluParams p{};
  p.x = x; p.b = b; p.y = y; p.f1 = f1; p.f2 = f2; p.signs_in = signs_in; p.signs_out = signs_out;
  p.dtype = static_cast<DType>(dtype);
  for (int d = 0; d < 4; ++d) {
    p.x_stride[d] = x_stride[d];
    p.y_stride[d] = y_stride[d];
  }
  p.n = ints[0]; p.c = ints[1]; p.in_h = ints[2]; p.in_w = ints[3]; p.mid_h = ints[4]; p.mid_w = ints[5];
  p.out_h = ints[6]; p.out_w = ints[7]; p.up = ints[8]; p.down = ints[9];
  p.pad1_x0 = ints[10]; p.pad1_y0 = ints[11]; p.pad2_x0 = ints[12]; p.pad2_y0 = ints[13];
  p.f1_w = ints[14]; p.f1_h = ints[15]; p.f2_w = ints[16]; p.f2_h = ints[17]; p.signs_w = ints[18];
  p.f1_separable = ints[19] != 0; p.f2_separable = ints[20] != 0;
  p.gain = gain; p.slope = slope; p.clamp = clamp;
  return filtered_lrelu_launch(p, nullptr);
}

const char* emu_error_string(int code) { return error_string(code); }

void emu_set_sm_count(int n) { emu::sm_count = n; }

// block.x, block.y, dynamic shared memory bytes, grid.x, grid.y, grid.z of the last launch.
void emu_last_launch(int* out) {
  for (int i = 0; i < 6; ++i) out[i] = emu::last_launch[i];
}

}  // extern "C"
