// Interface between the torch glue (csrc/cuda/*.cpp) and the CUDA kernels (csrc/cuda/*.cu).
//
// Plain C++: no torch and no CUDA headers, so the .cu files compile without torch (the CPU torch
// wheel lacks the CUDA headers) and the glue only passes raw device pointers, sizes and strides.
// Every launcher returns 0 on success or a cudaError_t code (see error_string).
#pragma once

#include <cstdint>

namespace fastgan_cuda {

// Element type of the tensors a launcher reads and writes. Kernels compute in float for the first
// three and in double for kDouble ("accumulation type").
enum class DType : int { kHalf = 0, kBFloat16 = 1, kFloat = 2, kDouble = 3 };

// Activation codes: the `code` column of fastgan/backends/activations.py.
enum ActCode : int {
  kLinear = 0, kRelu = 1, kLrelu = 2, kTanh = 3, kSigmoid = 4,
  kElu = 5, kSelu = 6, kSoftplus = 7, kSwish = 8, kNumActs = 9
};

// ---------------------------------------------------------------------------------------------
// upfirdn2d: y[n, c, oy, ox] = sum_{ky, kx} f[ky, kx] * u[oy * down_y + ky - pad_y0, ox * down_x + kx - pad_x0]
// where u is x with (up - 1) zeros inserted after every pixel (u[q] = x[q / up] when q % up == 0
// and 0 <= q / up < size, else 0). The taps are correlation-ordered (the glue flips them for a true
// convolution) and already scaled by the gain.
struct Upfirdn2dParams {
  const void* x;          // input [n, c, in_h, in_w], element type `dtype`
  void* y;                // output [n, c, out_h, out_w], element type `dtype`
  const void* f;          // taps [f_h, f_w], contiguous, float (double when dtype == kDouble)
  DType dtype;
  int64_t x_stride[4];    // element strides of x along (n, c, h, w)
  int64_t y_stride[4];    // element strides of y along (n, c, h, w)
  int n, c, in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;     // the far-side padding is implied by out_w / out_h
  int f_w, f_h;
};

int upfirdn2d_launch(const Upfirdn2dParams& p, void* stream);

// ---------------------------------------------------------------------------------------------
// bias_act, elementwise over a dense tensor walked in storage order. Element o (storage offset)
// belongs to bias channel (o / bias_stride) % bias_size.
enum class BiasActMode : int {
  kForward = 0,   // out = clamp(gain * act(x + b))
  kGrad = 1,      // out = dy * gain * act'(x + b) * mask
  kGrad2 = 2      // out = g * dy * gain * act''(x + b) * mask
};                // mask = 0 where |gain * act(x + b)| > clamp (clamp >= 0), else 1

struct BiasActParams {
  const void* x;          // [numel], element type `dtype`
  const void* b;          // [bias_size], element type `dtype`, or nullptr
  const void* dy;         // kGrad, kGrad2: same layout as x, else nullptr
  const void* g;          // kGrad2: same layout as x, else nullptr
  void* out;              // same layout as x
  DType dtype;
  int64_t numel;
  int64_t bias_stride;    // storage distance between consecutive indices along the bias dim (>= 1)
  int64_t bias_size;      // number of bias channels (>= 1)
  int act;                // ActCode
  double alpha;           // lrelu negative slope
  double gain;
  double clamp;           // < 0: no clamping
};

int bias_act_launch(const BiasActParams& p, BiasActMode mode, void* stream);

// db[ch] += sum of dx over the dense tensor viewed in storage order as [outer, channels, inner].
// `db` holds `channels` accumulators (float, or double when dtype == kDouble), zeroed by the caller.
int bias_grad_reduce_launch(const void* dx, DType dtype, int64_t outer, int64_t channels, int64_t inner,
                            void* db, void* stream);

// ---------------------------------------------------------------------------------------------
// filtered_lrelu, the fused primitive of fastgan/ops/filtered_lrelu.py (forward, backward and every
// higher derivative are calls of it):
//   u = FIR f1 of (x + b) upsampled by `up`, padded by pad1 on the upsampled grid  -> [mid_h, mid_w]
//   a = act(u): s = (u > 0 ? u : u * slope) * gain, clamped to [-clamp, clamp] (clamp >= 0); or, with
//       signs_in, a = u * {gain, gain * slope, 0, 0}[code]
//   y = FIR f2 of a (zero outside the intermediate), padded by pad2, downsampled by `down`
// Sign codes: bit 0 = (u <= 0 or NaN), bit 1 = clamped; 4 codes per byte (value j at bits 2*(j%4)),
// rows of signs_w = ceil(mid_w / 4) bytes, contiguous [n, c, mid_h, signs_w].
struct FilteredLreluParams {
  const void* x;              // [n, c, in_h, in_w], element type `dtype`, strides x_stride
  const void* b;              // [c] in the accumulation type, or nullptr
  void* y;                    // [n, c, out_h, out_w], element type `dtype`, strides y_stride
  const void* f1;             // correlation-order taps in the accumulation type: [f1_h, f1_w], or
                              // [f1_w] when f1_separable (the same taps on both axes, f1_h == f1_w)
  const void* f2;             // [f2_h, f2_w] or [f2_w] when f2_separable
  const uint8_t* signs_in;    // codes to apply instead of the activation, or nullptr
  uint8_t* signs_out;         // where to store the codes (zero-initialised), or nullptr
  DType dtype;
  int64_t x_stride[4];
  int64_t y_stride[4];
  int n, c, in_h, in_w, mid_h, mid_w, out_h, out_w;
  int up, down;
  int pad1_x0, pad1_y0, pad2_x0, pad2_y0;
  int f1_w, f1_h, f2_w, f2_h;
  bool f1_separable, f2_separable;
  int signs_w;
  double gain, slope, clamp;  // clamp < 0: none
};

int filtered_lrelu_launch(const FilteredLreluParams& p, void* stream);

// Text of a launcher's error code.
const char* error_string(int code);

}  // namespace fastgan_cuda
