"""Run the CUDA kernels of csrc/cuda on the CPU, for testing without a GPU.

The kernel sources are compiled by the host C++ compiler with tests/cuda_emu.h (an emulation of the
CUDA execution model: one fiber per CUDA thread, cooperative barriers, NaN-poisoned shared memory)
after two textual rewrites (kernel launches and ``extern __shared__`` arrays). The resulting
library is loaded with ctypes; :class:`EmulatedCuda` then offers the primitive interface of
``fastgan.backends.cuda`` over CPU tensors, doing what the torch glue (csrc/cuda/*.cpp) does around
the launchers: filter preparation, output allocation, layout matching, the separable two-pass
order and the bias-gradient reduction.

The build is cached in build/cuda_emu/<hash of the inputs>/ .
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Tuple

import torch

from fastgan.backends.activations import ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
TESTS = ROOT / "tests"
FLAGS = ["-std=c++17", "-O1", "-fPIC", "-shared", "-w"]

_LAUNCH = re.compile(r"(\b[A-Za-z_]\w*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
_DYN_SMEM = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?unsigned char\s+(\w+)\[\];")

DTYPES = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2, torch.float64: 3}


class Unavailable(Exception):
    """The emulation cannot be built here (the message says why)."""


def _cuda_include() -> Path:
    nvcc = shutil.which("nvcc")
    cands = ([Path(nvcc).resolve().parent.parent / "include"] if nvcc else []) + [Path("/usr/local/cuda/include")]
    for c in cands:
        if (c / "cuda_runtime.h").is_file():
            return c
    raise Unavailable("CUDA headers (cuda_runtime.h) not found; install the CUDA toolkit")


def emulated_source(cu: Path) -> str:
    """The text of a .cu file rewritten for the host compiler."""
    text = _LAUNCH.sub(r"::emu::Launch(\2).run(\1, ", cu.read_text())
    text = _DYN_SMEM.sub(r"unsigned char* \1 = ::emu::dynamic_smem();", text)
    return '#include "cuda_emu.h"\n#line 1 "' + str(cu) + '"\n' + text


def build() -> Path:
    """Compile (or reuse) the emulation library; returns its path."""
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        raise Unavailable("no host C++ compiler")
    include = _cuda_include()
    cus = sorted(CUDA_DIR.glob("*.cu"))
    inputs = cus + sorted(CUDA_DIR.glob("*.h")) + sorted(CUDA_DIR.glob("*.cuh")) + [
        TESTS / "cuda_emu.h", TESTS / "cuda_emu_driver.cpp", Path(__file__)]
    digest = hashlib.sha256(" ".join(FLAGS + [cxx, str(include)]).encode())
    for p in inputs:
        digest.update(p.name.encode() + p.read_bytes())
    out_dir = ROOT / "build" / "cuda_emu" / digest.hexdigest()[:16]
    lib = out_dir / "libfastgan_cuda_emu.so"
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    for cu in cus:
        src = out_dir / (cu.stem + ".emu.cpp")
        src.write_text(emulated_source(cu))
        sources.append(str(src))
    tmp = out_dir / f"tmp-{lib.name}"
    cmd = [cxx, *FLAGS, "-I", str(TESTS), "-I", str(CUDA_DIR), "-isystem", str(include),
           *sources, str(TESTS / "cuda_emu_driver.cpp"), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError("building the CUDA emulation failed:\n" + proc.stderr[-6000:])
    tmp.replace(lib)  # atomic: a concurrent run never loads a half-written library
    return lib


def _channels_last(x: torch.Tensor) -> bool:
    """What at::Tensor::suggest_memory_format decides for the tensors the tests make."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


class EmulatedCuda:
    """The primitives of ``fastgan.backends.cuda`` for CPU tensors, computed by the emulated kernels."""

    def __init__(self, lib_path: Path):
        lib = ctypes.CDLL(str(lib_path))
        vp, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
        lib.emu_upfirdn2d.argtypes = [vp, vp, vp, i32, ctypes.POINTER(i64), ctypes.POINTER(i64), ctypes.POINTER(i32)]
        lib.emu_bias_act.argtypes = [vp, vp, vp, vp, vp, i32, i64, i64, i64, i32, f64, f64, f64, i32]
        lib.emu_bias_grad_reduce.argtypes = [vp, i32, i64, i64, i64, vp]
        lib.emu_filtered_lrelu.argtypes = [vp, vp, vp, vp, vp, vp, vp, i32, ctypes.POINTER(i64), ctypes.POINTER(i64),
                                           ctypes.POINTER(i32), f64, f64, f64]
        lib.emu_error_string.restype = ctypes.c_char_p
        lib.emu_set_sm_count.argtypes = [i32]
        lib.emu_last_launch.argtypes = [ctypes.POINTER(i32)]
        self.lib = lib

    def _check(self, err: int) -> None:
        if err != 0:
            raise RuntimeError("emulated launch failed: " + self.lib.emu_error_string(err).decode())

    def set_sm_count(self, n: int) -> None:
        """SM count the launchers see (it sizes grid-stride grids; small values make loops iterate)."""
        self.lib.emu_set_sm_count(n)

    def last_launch(self) -> dict:
        v = (ctypes.c_int * 6)()
        self.lib.emu_last_launch(v)
        return {"block": (v[0], v[1]), "smem": v[2], "grid": (v[3], v[4], v[5])}

    # ---- upfirdn2d (mirrors csrc/cuda/upfirdn2d.cpp) ----
    def _pass(self, x: torch.Tensor, taps: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
              px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
        fh, fw = taps.shape
        n, c, h, w = x.shape
        ow = (w * upx + px0 + px1 - fw + downx) // downx
        oh = (h * upy + py0 + py1 - fh + downy) // downy
        assert ow >= 1 and oh >= 1
        fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
        y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=fmt)
        y.fill_(math.nan)  # outputs the kernel fails to write stay NaN
        xs = (ctypes.c_int64 * 4)(*x.stride())
        ys = (ctypes.c_int64 * 4)(*y.stride())
        ints = (ctypes.c_int * 14)(n, c, h, w, oh, ow, upx, upy, downx, downy, px0, py0, fw, fh)
        self._check(self.lib.emu_upfirdn2d(x.data_ptr(), y.data_ptr(), taps.data_ptr(), DTYPES[x.dtype], xs, ys, ints))
        return y

    def upfirdn2d(self, x, f, up, down, pad, flip_filter, gain):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        taps = f.to(acc)
        if not flip_filter:
            taps = taps.flip(list(range(f.ndim)))
        taps = (taps * gain ** (f.ndim / 2)).contiguous()
        (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
        if f.ndim == 2:
            return self._pass(x, taps, upx, upy, downx, downy, px0, px1, py0, py1)
        ft = taps.shape[0]
        tx, ty = taps.view(1, ft), taps.view(ft, 1)
        h, w = x.shape[2], x.shape[3]
        ow = (w * upx + px0 + px1 - ft + downx) // downx
        oh = (h * upy + py0 + py1 - ft + downy) // downy
        if h * ow <= oh * w:
            t = self._pass(x, tx, upx, 1, downx, 1, px0, px1, 0, 0)
            return self._pass(t, ty, 1, upy, 1, downy, 0, 0, py0, py1)
        t = self._pass(x, ty, 1, upy, 1, downy, 0, 0, py0, py1)
        return self._pass(t, tx, upx, 1, downx, 1, px0, px1, 0, 0)

    # ---- bias_act (mirrors csrc/cuda/bias_act.cpp) ----
    @staticmethod
    def _dense(x: torch.Tensor) -> torch.Tensor:
        expected = 1  # dense: the strides of the non-singleton dims, sorted, are a mixed radix
        for stride, size in sorted((st, n) for st, n in zip(x.stride(), x.shape) if n != 1):
            if stride != expected:
                return x.contiguous()
            expected *= size
        return x

    @staticmethod
    def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if t.stride() == x.stride() and t.dtype == x.dtype:
            return t
        return torch.empty_like(x).copy_(t)

    def _launch(self, mode: int, x, b, dim, act, alpha, gain, clamp, dy=None, g=None) -> Tuple[torch.Tensor, ...]:
        x = self._dense(x)
        stride, size = 1, 1
        bx = None
        if b is not None:
            bx = b.to(x.dtype).contiguous()
            if x.shape[dim] > 1:
                stride, size = x.stride(dim), x.shape[dim]
        dy = None if dy is None else self._like(dy, x)
        g = None if g is None else self._like(g, x)
        out = torch.empty_like(x).fill_(math.nan)
        clamp_v = -1.0 if clamp is None or clamp < 0 else float(clamp)
        self._check(self.lib.emu_bias_act(x.data_ptr(), _ptr(bx), _ptr(dy), _ptr(g), out.data_ptr(), DTYPES[x.dtype],
                                          x.numel(), stride, size, ACTIVATIONS[act].code, float(alpha), float(gain),
                                          clamp_v, mode))
        return out, x, stride, size

    def bias_act(self, x, b, dim, act, alpha, gain, clamp):
        return self._launch(0, x, b, dim, act, alpha, gain, clamp)[0]

    def bias_act_grad(self, dy, x, b, dim, act, alpha, gain, clamp):
        dx, xd, stride, size = self._launch(1, x, b, dim, act, alpha, gain, clamp, dy=dy)
        if b is None:
            return dx, None
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        db = torch.zeros(size, dtype=acc)
        outer = xd.numel() // (size * stride)
        self._check(self.lib.emu_bias_grad_reduce(dx.data_ptr(), DTYPES[x.dtype], outer, size, stride, db.data_ptr()))
        return dx, db.to(b.dtype)

    def bias_act_grad2(self, g, dy, x, b, dim, act, alpha, gain, clamp):
        return self._launch(2, x, b, dim, act, alpha, gain, clamp, dy=dy, g=g)[0]

    # ---- filtered_lrelu (mirrors csrc/cuda/filtered_lrelu.cpp) ----
    def fused(self, x, b, f1, f2, up, down, pad1, pad2, gain, slope, clamp, signs, write_signs):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32

        k1, k2 = f1.to(acc).contiguous(), f2.to(acc).contiguous()
        (f1w, f1h), (f2w, f2h) = (k1.shape[-1], k1.shape[0]), (k2.shape[-1], k2.shape[0])
        n, c, h, w = x.shape
        mid_w = w * up + pad1[0] + pad1[1] - f1w + 1
        mid_h = h * up + pad1[2] + pad1[3] - f1h + 1
        out_w = (mid_w + pad2[0] + pad2[1] - f2w) // down + 1
        out_h = (mid_h + pad2[2] + pad2[3] - f2h) // down + 1
        signs_w = (mid_w + 3) // 4
        bias = None if b is None else b.to(acc).contiguous()
        signs_in = None if signs is None else signs.contiguous()
        if signs_in is not None:
            assert not write_signs and signs_in.shape == (n, c, mid_h, signs_w) and signs_in.dtype == torch.uint8
        signs_out = torch.zeros((n, c, mid_h, signs_w), dtype=torch.uint8) if write_signs else None
        fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format
        y = torch.empty((n, c, out_h, out_w), dtype=x.dtype, memory_format=fmt).fill_(math.nan)
        xs = (ctypes.c_int64 * 4)(*x.stride())
        ys = (ctypes.c_int64 * 4)(*y.stride())
        ints = (ctypes.c_int * 21)(n, c, h, w, mid_h, mid_w, out_h, out_w, up, down, pad1[0], pad1[2], pad2[0],
                                   pad2[2], f1w, f1h, f2w, f2h, signs_w, k1.ndim == 1, k2.ndim == 1)
        self._check(self.lib.emu_filtered_lrelu(
            x.data_ptr(), _ptr(bias), y.data_ptr(), k1.data_ptr(), k2.data_ptr(), _ptr(signs_in), _ptr(signs_out),
            DTYPES[x.dtype], xs, ys, ints, float(gain), float(slope), -1.0 if clamp is None else float(clamp)))
        return y, (signs_out if signs_out is not None else torch.empty(0, dtype=torch.uint8))
