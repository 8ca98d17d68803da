// Index math of upfirdn2d along one axis, shared by the CUDA kernels, their launchers and the
// host-side unit test (tests/cuda_index_test.cpp). Plain C++; __host__ __device__ under nvcc.
//
// Along one axis, output o of a filter with `taps` correlation taps reads the upsampled, padded
// signal at positions q = o * down - pad0 + k for k in [0, taps). The upsampled signal is nonzero
// only where q is a multiple of `up`, where it equals input sample q / up. So only every up-th
// tap contributes, and consecutive contributing taps read consecutive input samples.
#pragma once

#ifdef __CUDACC__
#define FASTGAN_HD __host__ __device__ __forceinline__
#else
#define FASTGAN_HD inline
#endif

namespace fastgan_cuda {

// Floor division and modulo for b > 0 (C++ '/' truncates toward zero).
FASTGAN_HD int floor_div(int a, int b) {
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
FASTGAN_HD int floor_mod(int a, int b) {
  const int r = a % b;
  return r < 0 ? r + b : r;
}
FASTGAN_HD int ceil_div(int a, int b) { return -floor_div(-a, b); }

// Output length along one axis (the Python ops use the same formula with floor division).
FASTGAN_HD int upfirdn_out_size(int in, int up, int down, int pad0, int pad1, int taps) {
  return floor_div(in * up + pad0 + pad1 - taps + down, down);
}

// The contributing taps of output o: taps first_tap, first_tap + up, ... (count of them) read input
// samples first_in, first_in + 1, ... . first_in may lie outside [0, in) (zero padding).
struct AxisTaps {
  int first_tap;
  int first_in;
  int count;
};

FASTGAN_HD AxisTaps axis_taps(int o, int up, int down, int pad0, int taps) {
  const int q0 = o * down - pad0;          // position of tap 0 in the upsampled, padded signal
  AxisTaps t;
  t.first_tap = floor_mod(-q0, up);        // smallest k >= 0 with (q0 + k) % up == 0
  t.first_in = floor_div(q0 + t.first_tap, up);  // exact division
  t.count = t.first_tap < taps ? (taps - t.first_tap + up - 1) / up : 0;
  return t;
}

// First input sample read by any of the outputs o0, o0 + 1, ... (first_in is nondecreasing in o).
FASTGAN_HD int tile_first_in(int o0, int up, int down, int pad0) { return ceil_div(o0 * down - pad0, up); }

// Number of input samples that n_out consecutive outputs can read, counted from tile_first_in: they
// span (n_out - 1) * down + taps positions of the upsampled signal, of which at most
// floor(span_minus_one / up) + 1 are multiples of up.
FASTGAN_HD int tile_in_size(int n_out, int up, int down, int taps) {
  return ((n_out - 1) * down + taps - 1) / up + 1;
}

}  // namespace fastgan_cuda
