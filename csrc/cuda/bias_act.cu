// bias_act CUDA kernels: the fused elementwise forward / gradient / second-order kernel, and the
// bias-gradient reduction. See docs/kernels.md, "bias_act / cuda".
#include "activations.cuh"
#include "cuda_common.cuh"

namespace fastgan_cuda {
namespace {

constexpr int kThreads = 256;

// The bias channel of consecutive storage offsets: channel = (offset / stride) % size, kept as a
// (channel, position within the stride) pair so stepping to the next offset needs no division.
struct ChannelCursor {
  int64_t stride, size, pos, channel;
  __device__ __forceinline__ ChannelCursor(int64_t offset, int64_t stride_, int64_t size_)
      : stride(stride_), size(size_) {
    const int64_t q = offset / stride;
    pos = offset - q * stride;
    channel = q % size;
  }
  __device__ __forceinline__ void next() {
    if (++pos == stride) {
      pos = 0;
      if (++channel == size) channel = 0;
    }
  }
};

// V elements moved as one 16-byte (V > 1) or element-sized (V == 1) memory transaction.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, BiasActMode MODE>
struct ElementOp {
  using A = acc_t<T>;
  int act;
  A alpha, gain, clamp;
  __device__ __forceinline__ A operator()(A x, A b, A dy, A g) const {
    const ActValue<A> a = activate<A>(act, x + b, alpha);
    const A y = a.y * gain;
    if (MODE == BiasActMode::kForward) {
      if (clamp < A(0)) return y;
      return y < -clamp ? -clamp : (y > clamp ? clamp : y);  // NaN passes through, like torch.clamp
    }
    // Gradients are zero where the output was clamped (and where it is NaN).
    const bool pass = clamp < A(0) || (y >= -clamp && y <= clamp);
    if (!pass) return A(0);
    if (MODE == BiasActMode::kGrad) return dy * gain * a.d;
    return g * dy * gain * a.d2;
  }
};

// Grid-stride loop over packs of V elements in storage order, then the numel % V tail elements.
template <typename T, BiasActMode MODE, int V>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(BiasActParams p, ElementOp<T, MODE> op) {
  using A = acc_t<T>;
  using P = Pack<T, V>;
  const bool has_b = p.b != nullptr;
  const T* __restrict__ b = static_cast<const T*>(p.b);
  const int64_t packs = p.numel / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;

  for (int64_t i = first; i < packs; i += step) {
    const P xv = static_cast<const P*>(p.x)[i];
    P dyv, gv, out;
    if (MODE != BiasActMode::kForward) dyv = static_cast<const P*>(p.dy)[i];
    if (MODE == BiasActMode::kGrad2) gv = static_cast<const P*>(p.g)[i];
    ChannelCursor cur(i * V, p.bias_stride, p.bias_size);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const A bj = has_b ? to_acc(b[cur.channel]) : A(0);
      const A dyj = MODE != BiasActMode::kForward ? to_acc(dyv.v[j]) : A(0);
      const A gj = MODE == BiasActMode::kGrad2 ? to_acc(gv.v[j]) : A(0);
      out.v[j] = from_acc<T>(op(to_acc(xv.v[j]), bj, dyj, gj));
      cur.next();
    }
    static_cast<P*>(p.out)[i] = out;
  }

  if (V > 1) {  // tail: fewer than V elements, one per thread of the first threads
    const int64_t o = packs * V + first;
    if (o < p.numel) {
      const T* x = static_cast<const T*>(p.x);
      const ChannelCursor cur(o, p.bias_stride, p.bias_size);
      const A bj = has_b ? to_acc(b[cur.channel]) : A(0);
      const A dyj = MODE != BiasActMode::kForward ? to_acc(static_cast<const T*>(p.dy)[o]) : A(0);
      const A gj = MODE == BiasActMode::kGrad2 ? to_acc(static_cast<const T*>(p.g)[o]) : A(0);
      static_cast<T*>(p.out)[o] = from_acc<T>(op(to_acc(x[o]), bj, dyj, gj));
    }
  }
}

inline bool aligned16(const void* ptr) { return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T, BiasActMode MODE>
int launch_mode(const BiasActParams& p, cudaStream_t stream) {
  using A = acc_t<T>;
  const ElementOp<T, MODE> op{p.act, A(p.alpha), A(p.gain), A(p.clamp < 0 ? -1.0 : p.clamp)};
  constexpr int kVec = 16 / sizeof(T);
  if (aligned16(p.x) && aligned16(p.dy) && aligned16(p.g) && aligned16(p.out)) {
    const int64_t work = p.numel / kVec > 0 ? p.numel / kVec : 1;
    bias_act_kernel<T, MODE, kVec><<<grid_stride_blocks(work, kThreads), kThreads, 0, stream>>>(p, op);
  } else {
    bias_act_kernel<T, MODE, 1><<<grid_stride_blocks(p.numel, kThreads), kThreads, 0, stream>>>(p, op);
  }
  return last_error();
}

// ---- bias gradient: db[ch] = sum over (outer, inner) of dx viewed as [outer, channels, inner] ----

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// inner >= 32: row r = (outer index, channel) is the contiguous segment [r * inner, (r+1) * inner).
// One warp per row: lanes stride the row (coalesced), a shuffle reduction, one atomic per row.
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_rows(const T* __restrict__ dx, int64_t rows, int64_t channels,
                                                        int64_t inner, acc_t<T>* __restrict__ db) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; r < rows; r += warps) {
    const T* row = dx + r * inner;
    A sum = 0;
    for (int64_t i = lane; i < inner; i += 32) sum += to_acc(row[i]);
    sum = warp_sum(sum);
    if (lane == 0) atomicAdd(db + r % channels, sum);
  }
}

// inner < 32: dx is a row-major [outer, cols] matrix with cols = channels * inner; column k belongs to
// channel k / inner. Block (32, 8): threadIdx.x picks a column of a 32-column strip (coalesced),
// threadIdx.y and blockIdx.y stride the rows; the 8 partial sums meet in shared memory and one
// atomic per column and block lands in db.
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_cols(const T* __restrict__ dx, int64_t outer, int64_t cols,
                                                        int64_t inner, acc_t<T>* __restrict__ db) {
  using A = acc_t<T>;
  __shared__ A partial[8][33];
  const int64_t col = blockIdx.x * 32ll + threadIdx.x;
  A sum = 0;
  if (col < cols)
    for (int64_t r = blockIdx.y * 8ll + threadIdx.y; r < outer; r += gridDim.y * 8ll) sum += to_acc(dx[r * cols + col]);
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    for (int k = 1; k < 8; ++k) sum += partial[k][threadIdx.x];
    atomicAdd(db + col / inner, sum);
  }
}

template <typename T>
int launch_reduce(const T* dx, int64_t outer, int64_t channels, int64_t inner, acc_t<T>* db, cudaStream_t stream) {
  if (inner >= 32) {
    const int64_t rows = outer * channels;
    reduce_rows<T><<<grid_stride_blocks(rows * 32, kThreads), kThreads, 0, stream>>>(dx, rows, channels, inner, db);
  } else {
    const int64_t cols = channels * inner;
    const int64_t strips = (cols + 31) / 32;
    // Enough row chunks to give every SM a few blocks, each chunk at least 8 rows deep.
    int64_t chunks = (static_cast<int64_t>(sm_count()) * 8 + strips - 1) / strips;
    const int64_t max_chunks = (outer + 7) / 8;
    chunks = chunks < max_chunks ? chunks : max_chunks;
    chunks = chunks < 1 ? 1 : (chunks > 65535 ? 65535 : chunks);
    if (strips > 0x7fffffff) return static_cast<int>(cudaErrorInvalidConfiguration);
    reduce_cols<T><<<dim3(static_cast<unsigned>(strips), static_cast<unsigned>(chunks)), dim3(32, 8), 0, stream>>>(
        dx, outer, cols, inner, db);
  }
  return last_error();
}

}  // namespace

int bias_act_launch(const BiasActParams& p, BiasActMode mode, void* stream) {
  if (p.numel == 0) return 0;
  if (p.bias_stride < 1 || p.bias_size < 1) return static_cast<int>(cudaErrorInvalidValue);
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (mode) {
      case BiasActMode::kForward: return launch_mode<T, BiasActMode::kForward>(p, as_stream(stream));
      case BiasActMode::kGrad: return launch_mode<T, BiasActMode::kGrad>(p, as_stream(stream));
      case BiasActMode::kGrad2: return launch_mode<T, BiasActMode::kGrad2>(p, as_stream(stream));
    }
    return static_cast<int>(cudaErrorInvalidValue);
  });
}

int bias_grad_reduce_launch(const void* dx, DType dtype, int64_t outer, int64_t channels, int64_t inner, void* db,
                            void* stream) {
  if (outer * channels * inner == 0) return 0;
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    return launch_reduce<T>(static_cast<const T*>(dx), outer, channels, inner, static_cast<acc_t<T>*>(db),
                            as_stream(stream));
  });
}

}  // namespace fastgan_cuda
