"""Build of fastgan's compiled kernels.

``fastgan._C``      C++17 + OpenMP CPU kernels from csrc/cpu (always; portable x86-64 code with
                    AVX2/AVX-512 paths chosen at run time).
``fastgan._C_cuda`` CUDA kernels from csrc/cuda, built only when torch has CUDA and nvcc is found,
                    or when FASTGAN_BUILD_CUDA=1 (then a missing toolchain is an error).

Install with ``pip install --no-build-isolation -e .`` so the extension matches the installed torch.
"""
import glob
import os
import shutil

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _extensions():
    from torch.utils.cpp_extension import CppExtension

    exts = []
    cpu_sources = _rel("csrc/cpu/*.cpp")
    if cpu_sources:
        exts.append(CppExtension(
            "fastgan._C", cpu_sources,
            include_dirs=[os.path.join(ROOT, "csrc", "cpu")],
            extra_compile_args=["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-Wall"],
            extra_link_args=["-fopenmp"]))
    want_cuda = os.environ.get("FASTGAN_BUILD_CUDA", "")
    cuda_sources = _rel("csrc/cuda/*.cu") + _rel("csrc/cuda/*.cpp")
    if cuda_sources and want_cuda != "0":
        import torch
        have = torch.version.cuda is not None and shutil.which("nvcc") is not None
        if have or want_cuda == "1":
            if torch.version.cuda is None:
                raise RuntimeError("FASTGAN_BUILD_CUDA=1 but the installed torch has no CUDA support "
                                   "(its wheel lacks the CUDA headers); install a CUDA build of torch")
            from torch.utils.cpp_extension import CUDAExtension
            exts.append(CUDAExtension(
                "fastgan._C_cuda", cuda_sources,
                include_dirs=[os.path.join(ROOT, "csrc", "cuda")],
                extra_compile_args={"cxx": ["-O3", "-std=c++17"],
                                    "nvcc": ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo"]}))
    return exts


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


setup(ext_modules=_extensions(), cmdclass=_cmdclass())
