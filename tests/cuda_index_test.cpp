// Host-side test of csrc/cuda/upfirdn2d_index.h, built and run by tests/test_cuda_sources.py.
//
// Along one axis (the 2-D kernels apply the same map to each axis independently) it checks, for every
// small configuration, that
//   * floor_div / floor_mod / ceil_div agree with floating-point floor / ceil,
//   * upfirdn_out_size and a filter evaluated through axis_taps reproduce a naive
//     zero-insert -> pad/crop -> correlate -> decimate implementation,
//   * the input tile of the tiled kernel (tile_first_in, tile_in_size) holds every sample any output
//     of the tile reads.
// Prints "ok <cases>" and exits 0, or prints the first failures and exits 1.
#include <cmath>
#include <cstdio>
#include <vector>

#include "upfirdn2d_index.h"

using namespace fastgan_cuda;

namespace {

int failures = 0;

void fail(const char* what, int n, int up, int down, int pad0, int pad1, int taps, int o) {
  if (++failures <= 10)
    std::printf("FAIL %s: n=%d up=%d down=%d pad=(%d,%d) taps=%d o=%d\n", what, n, up, down, pad0, pad1, taps, o);
}

// The definition, step by step: upsample with zeros, pad (negative crops), correlate (valid), decimate.
std::vector<double> naive(const std::vector<double>& x, int up, int down, int pad0, int pad1,
                          const std::vector<double>& f) {
  std::vector<double> u(x.size() * up, 0.0);
  for (size_t i = 0; i < x.size(); ++i) u[i * up] = x[i];
  std::vector<double> padded;
  const int len = static_cast<int>(u.size()) + pad0 + pad1;
  for (int i = 0; i < len; ++i) {
    const int src = i - pad0;
    padded.push_back(src >= 0 && src < static_cast<int>(u.size()) ? u[src] : 0.0);
  }
  std::vector<double> out;
  const int taps = static_cast<int>(f.size());
  for (int o = 0; o + taps <= len; o += down) {
    double acc = 0;
    for (int k = 0; k < taps; ++k) acc += f[k] * padded[o + k];
    out.push_back(acc);
  }
  return out;
}

void check_division() {
  for (int a = -50; a <= 50; ++a)
    for (int b = 1; b <= 7; ++b) {
      const double q = static_cast<double>(a) / b;
      if (floor_div(a, b) != static_cast<int>(std::floor(q)) || ceil_div(a, b) != static_cast<int>(std::ceil(q)) ||
          floor_mod(a, b) != a - b * static_cast<int>(std::floor(q)))
        fail("floor_div/ceil_div/floor_mod", a, b, 0, 0, 0, 0, 0);
    }
}

// Returns 1 if the configuration has a nonempty output (and was checked), else 0.
int check_axis(int n, int up, int down, int pad0, int pad1, int taps) {
  std::vector<double> x(n), f(taps);
  for (int i = 0; i < n; ++i) x[i] = 1.0 + i * 0.37 - (i % 3) * 1.3;
  for (int k = 0; k < taps; ++k) f[k] = 0.5 + k * k * 0.11;
  const int out = upfirdn_out_size(n, up, down, pad0, pad1, taps);
  const std::vector<double> want = out >= 1 ? naive(x, up, down, pad0, pad1, f) : std::vector<double>();
  if (static_cast<int>(want.size()) != (out > 0 ? out : 0)) {
    fail("upfirdn_out_size", n, up, down, pad0, pad1, taps, out);
    return 0;
  }
  if (out < 1) return 0;

  // Direct evaluation as in the direct kernel: contributing taps only, clipped to the input.
  for (int o = 0; o < out; ++o) {
    const AxisTaps t = axis_taps(o, up, down, pad0, taps);
    double acc = 0;
    for (int j = 0; j < t.count; ++j) {
      const int i = t.first_in + j;
      if (i >= 0 && i < n) acc += f[t.first_tap + j * up] * x[i];
    }
    if (std::fabs(acc - want[o]) > 1e-9 * (1 + std::fabs(want[o]))) fail("axis_taps value", n, up, down, pad0, pad1, taps, o);
  }

  // Tiles of several widths: every sample read by an output of the tile lies inside the staged span.
  for (int tile = 1; tile <= 5; ++tile)
    for (int o0 = 0; o0 < out; o0 += tile) {
      const int first = tile_first_in(o0, up, down, pad0);
      const int size = tile_in_size(tile, up, down, taps);
      for (int o = o0; o < o0 + tile && o < out; ++o) {
        const AxisTaps t = axis_taps(o, up, down, pad0, taps);
        if (t.count > 0 && (t.first_in < first || t.first_in + t.count > first + size))
          fail("tile span", n, up, down, pad0, pad1, taps, o);
      }
    }
  return 1;
}

}  // namespace

int main() {
  check_division();
  int cases = 0;
  for (int n = 1; n <= 9; ++n)
    for (int up = 1; up <= 4; ++up)
      for (int down = 1; down <= 4; ++down)
        for (int taps = 1; taps <= 9; ++taps)
          for (int pad0 = -6; pad0 <= 6; ++pad0)
            for (int pad1 = -6; pad1 <= 6; ++pad1) cases += check_axis(n, up, down, pad0, pad1, taps);
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("ok %d\n", cases);
  return 0;
}
