// upfirdn2d CUDA kernels: upsample by zero insertion, pad/crop, FIR filter, downsample.
//
// Two kernels (see docs/kernels.md, "upfirdn2d / cuda"):
//   tiled   a block computes an output tile of one (n, c) plane after staging the input region it
//           reads (plus the filter taps) in shared memory. Used when rows are contiguous (stride 1
//           along w). Templated on up/down/filter-size bounds for the StyleGAN cases (0 = runtime
//           value), which lets the tap loops unroll; one all-runtime instance covers the rest.
//   direct  one thread per output element reading global memory (L1/L2 cached); any strides,
//           any filter size. Used for channels_last tensors (threads walk channels fastest, so
//           loads coalesce), very narrow outputs and filters too large for shared memory.
// The separable (1-D filter) case is two calls from the glue, each a 1-D pass of these kernels
// with a [1, ft] or [ft, 1] filter.
#include "cuda_common.cuh"
#include "upfirdn2d_index.h"

namespace fastgan_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kSmemTarget = 24 * 1024;   // preferred bytes per block: 6 blocks/SM on A100, 9 on H100
constexpr int kSmemMax = 48 * 1024;      // static limit without opting in to more
constexpr int kMinTiledWidth = 16;       // narrower outputs waste most of a 32-wide tile

// Runs body(j) for j in [0, count). With N > 0 (count <= N known at compile time) the loop is fully
// unrolled with a guard; N == 0 is a plain runtime loop.
template <int N>
struct TapLoop {
  template <typename Body>
  __device__ __forceinline__ static void run(int count, Body&& body) {
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (j < count) body(j);
  }
};
template <>
struct TapLoop<0> {
  template <typename Body>
  __device__ __forceinline__ static void run(int count, Body&& body) {
#pragma unroll 4
    for (int j = 0; j < count; ++j) body(j);
  }
};

// Most taps that can contribute to one output along an axis (0 = unknown at compile time).
__host__ __device__ constexpr int max_axis_taps(int max_f, int up) { return (max_f > 0 && up > 0) ? (max_f + up - 1) / up : 0; }

// Output tile of the tiled kernel: blockDim.x columns by `out_h` rows; each thread computes one
// column and rows threadIdx.y, threadIdx.y + blockDim.y, ...; `in_w` x `in_h` input samples.
struct TileShape {
  int out_h;
  int in_w, in_h;
};

// Template arguments: compile-time up/down per axis (0 = read from p) and compile-time upper bounds
// of the filter size (0 = none), which must hold for p.f_w / p.f_h (checked by the launcher).
template <typename T, int UPX, int UPY, int DOWNX, int DOWNY, int MAXFW, int MAXFH>
__global__ void __launch_bounds__(kThreads) upfirdn2d_tiled(Upfirdn2dParams p, TileShape ts) {
  using A = acc_t<T>;
  const int up_x = UPX > 0 ? UPX : p.up_x;
  const int up_y = UPY > 0 ? UPY : p.up_y;
  const int down_x = DOWNX > 0 ? DOWNX : p.down_x;
  const int down_y = DOWNY > 0 ? DOWNY : p.down_y;
  const int f_w = MAXFW == 1 ? 1 : p.f_w;
  const int f_h = MAXFH == 1 ? 1 : p.f_h;

  // Shared memory: the taps [f_h, f_w], then the input tile [in_h, in_w], both in A.
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* taps = reinterpret_cast<A*>(smem_raw);
  A* tile = taps + f_h * f_w;

  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int nthreads = blockDim.x * blockDim.y;
  const A* f = static_cast<const A*>(p.f);
  for (int i = tid; i < f_h * f_w; i += nthreads) taps[i] = f[i];

  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);

  // Column of this thread: fixed for the block. col = position of its first input sample in the tile.
  const int tile_w = blockDim.x;
  const int ox0 = blockIdx.x * tile_w;
  const int ox = ox0 + threadIdx.x;
  const int ix0 = tile_first_in(ox0, up_x, down_x, p.pad_x0);
  const AxisTaps tx = axis_taps(ox, up_x, down_x, p.pad_x0, f_w);
  const int col = tx.first_in - ix0;

  const int tiles_y = (p.out_h + ts.out_h - 1) / ts.out_h;
  const int planes = p.n * p.c;
  for (int tile_y = blockIdx.y; tile_y < tiles_y; tile_y += gridDim.y) {
    const int oy0 = tile_y * ts.out_h;
    const int iy0 = tile_first_in(oy0, up_y, down_y, p.pad_y0);
    for (int plane = blockIdx.z; plane < planes; plane += gridDim.z) {
      const int n = plane / p.c;
      const int c = plane - n * p.c;
      const T* xp = x + n * p.x_stride[0] + c * p.x_stride[1];
      T* yp = y + n * p.y_stride[0] + c * p.y_stride[1];

      // Stage the input tile (zeros outside the image). The barrier before it protects the tile
      // of the previous iteration, which other threads may still be reading.
      __syncthreads();
      for (int r = threadIdx.y; r < ts.in_h; r += blockDim.y) {
        const int iy = iy0 + r;
        const bool row_in = iy >= 0 && iy < p.in_h;
        for (int s = threadIdx.x; s < ts.in_w; s += blockDim.x) {
          const int ix = ix0 + s;
          const bool in = row_in && ix >= 0 && ix < p.in_w;
          tile[r * ts.in_w + s] = in ? to_acc(xp[iy * p.x_stride[2] + ix * p.x_stride[3]]) : A(0);
        }
      }
      __syncthreads();

      if (ox >= p.out_w) continue;
      for (int r = threadIdx.y; r < ts.out_h; r += blockDim.y) {
        const int oy = oy0 + r;
        if (oy >= p.out_h) break;
        const AxisTaps ty = axis_taps(oy, up_y, down_y, p.pad_y0, f_h);
        // Contributing tap (first_tap + jy*up_y, first_tap + jx*up_x) meets tile sample
        // (first_in - iy0 + jy, col + jx).
        const A* srow = tile + (ty.first_in - iy0) * ts.in_w + col;
        const A* frow = taps + ty.first_tap * f_w + tx.first_tap;
        A acc = 0;
        TapLoop<max_axis_taps(MAXFH, UPY)>::run(ty.count, [&](int jy) {
          const A* s = srow + jy * ts.in_w;
          const A* k = frow + jy * up_y * f_w;
          TapLoop<max_axis_taps(MAXFW, UPX)>::run(tx.count, [&](int jx) { acc += k[jx * up_x] * s[jx]; });
        });
        yp[oy * p.y_stride[2] + ox * p.y_stride[3]] = from_acc<T>(acc);
      }
    }
  }
}

// One thread per output element (grid-stride). With channels_fastest the linear index runs over
// (c, ox, oy, n), fastest first, matching channels_last storage; otherwise over (ox, oy, c, n).
template <typename T>
__global__ void __launch_bounds__(kThreads) upfirdn2d_direct(Upfirdn2dParams p, bool channels_fastest) {
  using A = acc_t<T>;
  const T* __restrict__ x = static_cast<const T*>(p.x);
  const A* __restrict__ f = static_cast<const A*>(p.f);
  T* __restrict__ y = static_cast<T*>(p.y);
  const int64_t total = static_cast<int64_t>(p.n) * p.c * p.out_h * p.out_w;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t i = idx;
    int n, c, oy, ox;
    if (channels_fastest) {
      c = static_cast<int>(i % p.c); i /= p.c;
      ox = static_cast<int>(i % p.out_w); i /= p.out_w;
      oy = static_cast<int>(i % p.out_h);
      n = static_cast<int>(i / p.out_h);
    } else {
      ox = static_cast<int>(i % p.out_w); i /= p.out_w;
      oy = static_cast<int>(i % p.out_h); i /= p.out_h;
      c = static_cast<int>(i % p.c);
      n = static_cast<int>(i / p.c);
    }
    const AxisTaps tx = axis_taps(ox, p.up_x, p.down_x, p.pad_x0, p.f_w);
    const AxisTaps ty = axis_taps(oy, p.up_y, p.down_y, p.pad_y0, p.f_h);
    // Keep only the taps whose input sample lies inside the image (the rest read zero padding).
    const int jx0 = max(0, -tx.first_in), jx1 = min(tx.count, p.in_w - tx.first_in);
    const int jy0 = max(0, -ty.first_in), jy1 = min(ty.count, p.in_h - ty.first_in);
    const T* xp = x + n * p.x_stride[0] + c * p.x_stride[1];
    A acc = 0;
    for (int jy = jy0; jy < jy1; ++jy) {
      const T* xrow = xp + (ty.first_in + jy) * p.x_stride[2];
      const A* frow = f + (ty.first_tap + jy * p.up_y) * p.f_w + tx.first_tap;
      for (int jx = jx0; jx < jx1; ++jx)
        acc += frow[jx * p.up_x] * to_acc(xrow[(tx.first_in + jx) * p.x_stride[3]]);
    }
    y[n * p.y_stride[0] + c * p.y_stride[1] + oy * p.y_stride[2] + ox * p.y_stride[3]] = from_acc<T>(acc);
  }
}

template <typename T>
int launch_direct(const Upfirdn2dParams& p, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(p.n) * p.c * p.out_h * p.out_w;
  const bool channels_fastest = p.y_stride[1] == 1 && p.c > 1;
  upfirdn2d_direct<T><<<grid_stride_blocks(total, kThreads), kThreads, 0, stream>>>(p, channels_fastest);
  return last_error();
}

// Bytes of shared memory for a tile of `out_h` rows.
template <typename T>
size_t tiled_smem(const Upfirdn2dParams& p, const TileShape& ts) {
  return sizeof(acc_t<T>) * (static_cast<size_t>(p.f_w) * p.f_h + static_cast<size_t>(ts.in_w) * ts.in_h);
}

// Picks the tile: 32 or 64 columns (one per thread), 8 rows per thread when the image is tall enough,
// halving the rows until the shared memory fits the target. Returns false if not even one row per
// thread fits the hard limit.
template <typename T>
bool choose_tile(const Upfirdn2dParams& p, dim3& block, TileShape& ts) {
  block.x = p.out_w <= 32 ? 32 : 64;
  block.y = kThreads / block.x;
  block.z = 1;
  const int rows_needed = (p.out_h + block.y - 1) / block.y * block.y;
  ts.out_h = block.y * 8 < rows_needed ? block.y * 8 : rows_needed;
  ts.in_w = tile_in_size(block.x, p.up_x, p.down_x, p.f_w);
  for (;;) {
    ts.in_h = tile_in_size(ts.out_h, p.up_y, p.down_y, p.f_h);
    const size_t bytes = tiled_smem<T>(p, ts);
    if (bytes <= static_cast<size_t>(kSmemTarget)) return true;
    if (ts.out_h <= static_cast<int>(block.y)) return bytes <= static_cast<size_t>(kSmemMax);
    ts.out_h /= 2;  // stays a multiple of block.y (a power of two)
  }
}

template <typename T, int UPX, int UPY, int DOWNX, int DOWNY, int MAXFW, int MAXFH>
int launch_tiled(const Upfirdn2dParams& p, const dim3& block, const TileShape& ts, cudaStream_t stream) {
  const int tiles_y = (p.out_h + ts.out_h - 1) / ts.out_h;
  const int planes = p.n * p.c;
  dim3 grid((p.out_w + block.x - 1) / block.x, tiles_y < 65535 ? tiles_y : 65535, planes < 65535 ? planes : 65535);
  upfirdn2d_tiled<T, UPX, UPY, DOWNX, DOWNY, MAXFW, MAXFH>
      <<<grid, block, tiled_smem<T>(p, ts), stream>>>(p, ts);
  return last_error();
}

// Does the specialisation (UPX, UPY, DOWNX, DOWNY, MAXFW, MAXFH) apply to p? 0 matches anything.
inline bool matches(const Upfirdn2dParams& p, int upx, int upy, int downx, int downy, int maxfw, int maxfh) {
  return (upx == 0 || p.up_x == upx) && (upy == 0 || p.up_y == upy) && (downx == 0 || p.down_x == downx) &&
         (downy == 0 || p.down_y == downy) && (maxfw == 0 || p.f_w <= maxfw) && (maxfh == 0 || p.f_h <= maxfh);
}

template <typename T>
int launch_typed(const Upfirdn2dParams& p, cudaStream_t stream) {
  dim3 block;
  TileShape ts;
  const bool rows_contiguous = p.x_stride[3] == 1 && p.y_stride[3] == 1;
  if (!rows_contiguous || p.out_w < kMinTiledWidth || !choose_tile<T>(p, block, ts)) return launch_direct<T>(p, stream);

#define FASTGAN_TILED(UPX, UPY, DOWNX, DOWNY, MAXFW, MAXFH)                                   \
  if (matches(p, UPX, UPY, DOWNX, DOWNY, MAXFW, MAXFH))                                      \
    return launch_tiled<T, UPX, UPY, DOWNX, DOWNY, MAXFW, MAXFH>(p, block, ts, stream);
  // 2-D filters up to 8x8 (StyleGAN2: 4x4 taps with up 2, down 2 or neither).
  FASTGAN_TILED(1, 1, 1, 1, 8, 8)
  FASTGAN_TILED(2, 2, 1, 1, 8, 8)
  FASTGAN_TILED(1, 1, 2, 2, 8, 8)
  // Horizontal and vertical passes of separable filters up to 16 taps.
  FASTGAN_TILED(1, 1, 1, 1, 16, 1)
  FASTGAN_TILED(2, 1, 1, 1, 16, 1)
  FASTGAN_TILED(1, 1, 2, 1, 16, 1)
  FASTGAN_TILED(1, 1, 1, 1, 1, 16)
  FASTGAN_TILED(1, 2, 1, 1, 1, 16)
  FASTGAN_TILED(1, 1, 1, 2, 1, 16)
#undef FASTGAN_TILED
  return launch_tiled<T, 0, 0, 0, 0, 0, 0>(p, block, ts, stream);
}

}  // namespace

int upfirdn2d_launch(const Upfirdn2dParams& p, void* stream) {
  if (static_cast<int64_t>(p.n) * p.c * p.out_h * p.out_w == 0) return 0;
  return dispatch_dtype(p.dtype, [&](auto tag) { return launch_typed<decltype(tag)>(p, as_stream(stream)); });
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace fastgan_cuda
