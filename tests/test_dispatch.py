"""Backend selection: impl= > use() scope > FASTGAN_BACKEND > auto, and clear errors."""
import subprocess
import sys

import pytest
import torch

import fastgan
from fastgan import backends, ops


def test_auto_on_cpu_prefers_cpu_extension(monkeypatch):
    monkeypatch.delenv("FASTGAN_BACKEND", raising=False)
    x = torch.zeros(1, 1, 4, 4)
    expected = "cpu" if backends.available("cpu") else "ref"
    assert backends.resolve(None, x) == expected
    assert backends.resolve("auto", x) == expected


def test_nvlabs_default_impl_cuda_on_cpu_is_fastest_available(monkeypatch):
    monkeypatch.delenv("FASTGAN_BACKEND", raising=False)
    x = torch.zeros(1, 1, 4, 4)
    assert backends.resolve("cuda", x) == backends.resolve(None, x)
    with backends.use("ref"):   # 'cuda' is no preference, so the scope applies
        assert backends.resolve("cuda", x) == "ref"


def test_priority_impl_over_scope_over_env(monkeypatch):
    x = torch.zeros(1, 1, 4, 4)
    monkeypatch.setenv("FASTGAN_BACKEND", "ref")
    assert backends.current() == "ref"
    assert backends.resolve(None, x) == "ref"
    with backends.use("auto"):
        assert backends.current() == "auto"
        with backends.use("ref"):
            assert backends.resolve(None, x) == "ref"
        assert backends.current() == "auto"
    assert backends.current() == "ref"


def test_env_read_at_call_time(monkeypatch):
    x = torch.randn(1, 2, 5, 5)
    f = ops.setup_filter([1, 2, 1])
    monkeypatch.setenv("FASTGAN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FASTGAN_BACKEND"):
        ops.filter2d(x, f)
    monkeypatch.setenv("FASTGAN_BACKEND", "ref")
    ops.filter2d(x, f)


def test_bad_impl_name():
    with pytest.raises(ValueError, match="impl"):
        ops.bias_act(torch.zeros(2, 3), act="relu", impl="tpu")
    with pytest.raises(ValueError, match="use"):
        with backends.use("gpu"):
            pass


def test_explicit_unavailable_backend_names_reason(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(backends.BackendUnavailable, match="triton"):
        backends.resolve("triton", x)


def test_scope_switches_ops_inside():
    x = torch.randn(2, 3, 6, 6)
    with backends.use("ref"):
        assert backends.resolve(None, x) == "ref"
        y = ops.bias_act(x, act="lrelu")
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, 0.2) * 2 ** 0.5)


def test_info_lists_every_backend():
    text = backends.info()
    for name in backends.NAMES:
        assert name in text
    assert "threads" in text and "ISA" in text


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "fastgan", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ref" in out.stdout and "usable" in out.stdout


def test_missing_extension_warns_once_and_strict_errors():
    code = ("import sys, warnings; sys.modules['fastgan._C'] = None\n"
            "warnings.simplefilter('always')\n"
            "import torch, fastgan.ops as ops\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    ops.bias_act(torch.randn(2, 3), act='relu'); ops.bias_act(torch.randn(2, 3), act='relu')\n"
            "msgs = [str(m.message) for m in w if 'fastgan._C' in str(m.message)]\n"
            "print(len(msgs)); print(msgs[0] if msgs else '')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__('os').environ, "FASTGAN_STRICT": "0"})
    assert out.returncode == 0, out.stderr
    count, msg = out.stdout.splitlines()[:2]
    assert count == "1" and "rebuild" in msg
    strict = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**__import__('os').environ, "FASTGAN_STRICT": "1"})
    assert strict.returncode != 0 and "FASTGAN_STRICT" in strict.stderr


def test_version():
    assert isinstance(fastgan.__version__, str)
