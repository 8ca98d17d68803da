// filtered_lrelu CUDA kernel: bias, up-FIR, leaky ReLU / clamp (or a stored sign mask), down-FIR, fused
// so the upsampled intermediate never reaches global memory. See fastgan_cuda.h for the semantics and
// docs/kernels.md for the design.
//
// A block computes an output tile of one (n, c) plane in three shared-memory stages:
//   1. the input window the tile needs, plus bias (zero outside the image);
//   2. the intermediate window: each thread computes groups of 4 horizontally adjacent values (one
//      sign byte), applies the activation or the stored codes, and writes the sign byte;
//   3. the outputs, a down-FIR over the intermediate window (zero outside the intermediate image).
// Both FIRs use the one-axis index math of upfirdn2d (stage 2 is "up, no down", stage 3 "down, no up").
// A separable filter runs as an x pass into shared scratch, then a y pass (taps f + f instead of f * f).
#include "cuda_common.cuh"
#include "upfirdn2d_index.h"

namespace fastgan_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kSmemTarget = 40 * 1024;
constexpr int kSmemMax = 48 * 1024;

// Window sizes of an output tile (the same for every tile; origins differ). mid_w is a multiple of 4
// and the intermediate window starts on a multiple of 4, so sign bytes are never split between tiles.
struct FlrTile {
  int out_w, out_h;
  int mid_w, mid_h;
  int in_w, in_h;
};

FlrTile make_tile(const FilteredLreluParams& p, int out_w, int out_h) {
  FlrTile t;
  t.out_w = out_w;
  t.out_h = out_h;
  // +3: the window start is rounded down to a multiple of 4.
  t.mid_w = (tile_in_size(out_w, 1, p.down, p.f2_w) + 3 + 3) / 4 * 4;
  t.mid_h = tile_in_size(out_h, 1, p.down, p.f2_h);
  t.in_w = tile_in_size(t.mid_w, p.up, 1, p.f1_w);
  t.in_h = tile_in_size(t.mid_h, p.up, 1, p.f1_h);
  return t;
}

// Shared memory, in words: taps f1 and f2, the intermediate window, and a scratch area used first by the
// input window (+ the x-pass of f1 when separable: [in_h, mid_w]) and then by the x-pass of f2 when
// separable ([mid_h, out_w]).
struct FlrSmem {
  size_t f1, f2, mid, scratch;
  size_t total() const { return f1 + f2 + mid + scratch; }
};

FlrSmem smem_words(const FilteredLreluParams& p, const FlrTile& t) {
  FlrSmem w;
  w.f1 = p.f1_separable ? p.f1_w : static_cast<size_t>(p.f1_w) * p.f1_h;
  w.f2 = p.f2_separable ? p.f2_w : static_cast<size_t>(p.f2_w) * p.f2_h;
  w.mid = static_cast<size_t>(t.mid_w) * t.mid_h;
  const size_t stage2 = static_cast<size_t>(t.in_w) * t.in_h + (p.f1_separable ? static_cast<size_t>(t.in_h) * t.mid_w : 0);
  const size_t stage3 = p.f2_separable ? static_cast<size_t>(t.mid_h) * t.out_w : 0;
  w.scratch = stage2 > stage3 ? stage2 : stage3;
  return w;
}

// Leaky ReLU with gain and clamp of the raw up-FIR value u, or the stored code applied to u. Adds the
// code of u to *codes_out at bit position 2*e.
template <typename A>
__device__ __forceinline__ A flr_activate(const FilteredLreluParams& p, A u, unsigned codes_in, int e,
                                      unsigned* codes_out) {
  const A gain = A(p.gain), slope = A(p.slope), clamp = A(p.clamp);
  if (p.signs_in != nullptr) {
    const unsigned code = (codes_in >> (2 * e)) & 3u;
    return code == 0 ? u * gain : (code == 1 ? u * gain * slope : A(0));
  }
  const bool neg = !(u > A(0));  // NaN counts as negative
  A v = (neg ? u * slope : u) * gain;
  bool clamped = false;
  if (p.clamp >= 0) {
    clamped = v > clamp || v < -clamp;
    v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
  }
  *codes_out |= ((neg ? 1u : 0u) | (clamped ? 2u : 0u)) << (2 * e);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) filtered_lrelu_kernel(FilteredLreluParams p, FlrTile t, FlrSmem w) {
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* f1 = reinterpret_cast<A*>(smem_raw);
  A* f2 = f1 + w.f1;
  A* mid = f2 + w.f2;
  A* in = mid + w.mid;                 // stage 1-2: input window [in_h, in_w]
  A* h1 = in + t.in_h * t.in_w;        // stage 2, separable f1: x-pass [in_h, mid_w]
  A* h2 = in;                          // stage 3, separable f2: x-pass [mid_h, out_w] (input no longer needed)

  const int tid = threadIdx.x;
  for (int i = tid; i < static_cast<int>(w.f1); i += blockDim.x) f1[i] = static_cast<const A*>(p.f1)[i];
  for (int i = tid; i < static_cast<int>(w.f2); i += blockDim.x) f2[i] = static_cast<const A*>(p.f2)[i];

  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const A* bias = static_cast<const A*>(p.b);
  const int groups_per_row = t.mid_w / 4;
  const int tiles_x = (p.out_w + t.out_w - 1) / t.out_w;
  const int tiles = tiles_x * ((p.out_h + t.out_h - 1) / t.out_h);
  const int planes = p.n * p.c;

  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int ox0 = (tile % tiles_x) * t.out_w, oy0 = (tile / tiles_x) * t.out_h;
    // Window origins: intermediate (x rounded down to a multiple of 4), then input.
    const int mx0 = floor_div(tile_first_in(ox0, 1, p.down, p.pad2_x0), 4) * 4;
    const int my0 = tile_first_in(oy0, 1, p.down, p.pad2_y0);
    const int ix0 = tile_first_in(mx0, p.up, 1, p.pad1_x0);
    const int iy0 = tile_first_in(my0, p.up, 1, p.pad1_y0);

    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
      const int n = plane / p.c, c = plane - n * p.c;
      const T* xp = x + n * p.x_stride[0] + c * p.x_stride[1];
      const A b = bias != nullptr ? bias[c] : A(0);
      const int64_t sign_plane = static_cast<int64_t>(plane) * p.mid_h * p.signs_w;

      __syncthreads();  // the previous iteration is done with the windows
      // Stage 1: input window + bias.
      for (int i = tid; i < t.in_h * t.in_w; i += blockDim.x) {
        const int r = i / t.in_w, s = i - r * t.in_w;
        const int iy = iy0 + r, ix = ix0 + s;
        const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
        in[i] = inside ? to_acc(xp[iy * p.x_stride[2] + ix * p.x_stride[3]]) + b : A(0);
      }
      __syncthreads();

      // Stage 2a (separable f1): horizontal up-FIR of every input-window row at every window column.
      if (p.f1_separable) {
        for (int i = tid; i < t.in_h * t.mid_w; i += blockDim.x) {
          const int r = i / t.mid_w, s = i - r * t.mid_w;
          const AxisTaps tx = axis_taps(mx0 + s, p.up, 1, p.pad1_x0, p.f1_w);
          const A* src = in + r * t.in_w + (tx.first_in - ix0);
          A u = 0;
#pragma unroll 4
          for (int jx = 0; jx < tx.count; ++jx) u += f1[tx.first_tap + jx * p.up] * src[jx];
          h1[i] = u;
        }
        __syncthreads();
      }

      // Stage 2: intermediate window, 4 values (one sign byte) per work item.
      for (int i = tid; i < t.mid_h * groups_per_row; i += blockDim.x) {
        const int r = i / groups_per_row, s0 = (i - r * groups_per_row) * 4;
        const int my = my0 + r, mx_g = mx0 + s0;  // mx_g: first column of the group, a multiple of 4
        const bool byte_inside = my >= 0 && my < p.mid_h && mx_g >= 0 && mx_g < p.mid_w;
        const int64_t byte_at = sign_plane + static_cast<int64_t>(my) * p.signs_w + mx_g / 4;
        const unsigned codes_in = (p.signs_in != nullptr && byte_inside) ? p.signs_in[byte_at] : 0u;
        const AxisTaps ty = axis_taps(my, p.up, 1, p.pad1_y0, p.f1_h);
        unsigned codes_out = 0;
        for (int e = 0; e < 4; ++e) {
          const int mx = mx_g + e;
          A a = 0;
          if (byte_inside && mx < p.mid_w) {
            A u = 0;
            if (p.f1_separable) {  // vertical up-FIR of the x-pass
              const A* src = h1 + (ty.first_in - iy0) * t.mid_w + s0 + e;
#pragma unroll 4
              for (int jy = 0; jy < ty.count; ++jy) u += f1[ty.first_tap + jy * p.up] * src[jy * t.mid_w];
            } else {
              // Contributing tap (first_tap + jy*up, first_tap + jx*up) meets window sample
              // (first_in - iy0 + jy, first_in - ix0 + jx).
              const AxisTaps tx = axis_taps(mx, p.up, 1, p.pad1_x0, p.f1_w);
              const A* src = in + (ty.first_in - iy0) * t.in_w + (tx.first_in - ix0);
              const A* k = f1 + ty.first_tap * p.f1_w + tx.first_tap;
              for (int jy = 0; jy < ty.count; ++jy) {
#pragma unroll 4
                for (int jx = 0; jx < tx.count; ++jx) u += k[jy * p.up * p.f1_w + jx * p.up] * src[jy * t.in_w + jx];
              }
            }
            a = flr_activate(p, u, codes_in, e, &codes_out);
          }
          mid[r * t.mid_w + s0 + e] = a;  // zero outside the intermediate image
        }
        // Overlapping windows of neighbouring tiles write identical bytes.
        if (p.signs_out != nullptr && byte_inside) p.signs_out[byte_at] = static_cast<uint8_t>(codes_out);
      }
      __syncthreads();

      // Stage 3a (separable f2): horizontal down-FIR of every intermediate-window row.
      if (p.f2_separable) {
        for (int i = tid; i < t.mid_h * t.out_w; i += blockDim.x) {
          const int r = i / t.out_w, s = i - r * t.out_w;
          const A* src = mid + r * t.mid_w + ((ox0 + s) * p.down - p.pad2_x0 - mx0);
          A acc = 0;
#pragma unroll 4
          for (int kx = 0; kx < p.f2_w; ++kx) acc += f2[kx] * src[kx];
          h2[i] = acc;
        }
        __syncthreads();
      }

      // Stage 3: outputs (all f2 taps contribute: no upsampling here).
      for (int i = tid; i < t.out_h * t.out_w; i += blockDim.x) {
        const int r = i / t.out_w, s = i - r * t.out_w;
        const int oy = oy0 + r, ox = ox0 + s;
        if (oy >= p.out_h || ox >= p.out_w) continue;
        const int my = oy * p.down - p.pad2_y0, mx = ox * p.down - p.pad2_x0;  // window of tap (0, 0)
        A acc = 0;
        if (p.f2_separable) {
          const A* src = h2 + (my - my0) * t.out_w + s;
#pragma unroll 4
          for (int ky = 0; ky < p.f2_h; ++ky) acc += f2[ky] * src[ky * t.out_w];
        } else {
          const A* src = mid + (my - my0) * t.mid_w + (mx - mx0);
          for (int ky = 0; ky < p.f2_h; ++ky) {
#pragma unroll 4
            for (int kx = 0; kx < p.f2_w; ++kx) acc += f2[ky * p.f2_w + kx] * src[ky * t.mid_w + kx];
          }
        }
        y[n * p.y_stride[0] + c * p.y_stride[1] + oy * p.y_stride[2] + ox * p.y_stride[3]] = from_acc<T>(acc);
      }
    }
  }
}

template <typename T>
int launch_typed(const FilteredLreluParams& p, cudaStream_t stream) {
  // Largest tile up to 32x32 whose windows fit the shared-memory target, halving the longer side.
  int tw = p.out_w < 32 ? p.out_w : 32, th = p.out_h < 32 ? p.out_h : 32;
  const size_t word = sizeof(acc_t<T>);
  FlrTile t = make_tile(p, tw, th);
  while (smem_words(p, t).total() * word > static_cast<size_t>(kSmemTarget) && (tw > 1 || th > 1)) {
    if (th >= tw) th = (th + 1) / 2; else tw = (tw + 1) / 2;
    t = make_tile(p, tw, th);
  }
  const FlrSmem words = smem_words(p, t);
  const size_t smem = words.total() * word;
  if (smem > static_cast<size_t>(kSmemMax)) return static_cast<int>(cudaErrorInvalidValue);  // filters too large
  const int64_t tiles = static_cast<int64_t>((p.out_w + tw - 1) / tw) * ((p.out_h + th - 1) / th);
  const int64_t planes = static_cast<int64_t>(p.n) * p.c;
  const int64_t grid_x = tiles < 0x7fffffff ? tiles : 0x7fffffff;
  const dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>(planes < 65535 ? planes : 65535));
  filtered_lrelu_kernel<T><<<grid, kThreads, smem, stream>>>(p, t, words);
  return last_error();
}

}  // namespace

int filtered_lrelu_launch(const FilteredLreluParams& p, void* stream) {
  if (static_cast<int64_t>(p.n) * p.c * p.out_h * p.out_w == 0) return 0;
  return dispatch_dtype(p.dtype, [&](auto tag) { return launch_typed<decltype(tag)>(p, as_stream(stream)); });
}

}  // namespace fastgan_cuda
