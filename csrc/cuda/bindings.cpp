// The Python module fastgan._C_cuda: the CUDA kernel primitives called by fastgan/backends/cuda.py.
#include <tuple>
#include <vector>

#include "glue.h"

namespace fastgan_cuda {
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, const std::vector<int64_t>& up,
                     const std::vector<int64_t>& down, const std::vector<int64_t>& pad, bool flip_filter, double gain);
at::Tensor bias_act(const at::Tensor& x, const c10::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha,
                    double gain, c10::optional<double> clamp);
std::tuple<at::Tensor, at::Tensor> bias_act_grad(const at::Tensor& dy, const at::Tensor& x,
                                                 const c10::optional<at::Tensor>& b, int64_t dim, int64_t act,
                                                 double alpha, double gain, c10::optional<double> clamp);
at::Tensor bias_act_grad2(const at::Tensor& g, const at::Tensor& dy, const at::Tensor& x,
                          const c10::optional<at::Tensor>& b, int64_t dim, int64_t act, double alpha, double gain,
                          c10::optional<double> clamp);
std::tuple<at::Tensor, at::Tensor> filtered_lrelu_fused(const at::Tensor& x, const c10::optional<at::Tensor>& b,
                                                        const at::Tensor& f1, const at::Tensor& f2, int64_t up,
                                                        int64_t down, const std::vector<int64_t>& pad1,
                                                        const std::vector<int64_t>& pad2, double gain, double slope,
                                                        c10::optional<double> clamp,
                                                        const c10::optional<at::Tensor>& signs, bool write_signs);
}  // namespace fastgan_cuda

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "fastgan CUDA kernels (raw primitives; use fastgan.ops)";
  m.def("upfirdn2d", &fastgan_cuda::upfirdn2d, "upfirdn2d(x, f, up[2], down[2], pad[4], flip_filter, gain) -> y",
        py::arg("x"), py::arg("f"), py::arg("up"), py::arg("down"), py::arg("pad"), py::arg("flip_filter"),
        py::arg("gain"));
  m.def("bias_act", &fastgan_cuda::bias_act, "bias_act(x, b, dim, act_code, alpha, gain, clamp) -> y",
        py::arg("x"), py::arg("b"), py::arg("dim"), py::arg("act"), py::arg("alpha"), py::arg("gain"),
        py::arg("clamp"));
  m.def("bias_act_grad", &fastgan_cuda::bias_act_grad,
        "bias_act_grad(dy, x, b, dim, act_code, alpha, gain, clamp) -> (dx, db or undefined)", py::arg("dy"),
        py::arg("x"), py::arg("b"), py::arg("dim"), py::arg("act"), py::arg("alpha"), py::arg("gain"),
        py::arg("clamp"));
  m.def("bias_act_grad2", &fastgan_cuda::bias_act_grad2,
        "bias_act_grad2(g, dy, x, b, dim, act_code, alpha, gain, clamp) -> d_x", py::arg("g"), py::arg("dy"),
        py::arg("x"), py::arg("b"), py::arg("dim"), py::arg("act"), py::arg("alpha"), py::arg("gain"),
        py::arg("clamp"));
  m.def("filtered_lrelu", &fastgan_cuda::filtered_lrelu_fused,
        "filtered_lrelu(x, b, f1, f2, up, down, pad1[4], pad2[4], gain, slope, clamp, signs, write_signs) -> (y, signs)",
        py::arg("x"), py::arg("b"), py::arg("f1"), py::arg("f2"), py::arg("up"), py::arg("down"), py::arg("pad1"),
        py::arg("pad2"), py::arg("gain"), py::arg("slope"), py::arg("clamp"), py::arg("signs"),
        py::arg("write_signs"));
}
