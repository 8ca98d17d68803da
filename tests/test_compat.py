"""patch_nvlabs() against a fake NVlabs-style torch_utils package written by the test."""
import sys
import textwrap

import torch

import fastgan.compat
import fastgan.ops as ops


def _write_fake(root, pkg):
    d = root / pkg / "ops"
    d.mkdir(parents=True)
    (root / pkg / "__init__.py").write_text("")
    (d / "__init__.py").write_text("")
    (d / "upfirdn2d.py").write_text(textwrap.dedent("""
        def setup_filter(f, **kw): raise AssertionError('original called')
        def upfirdn2d(x, f, **kw): raise AssertionError('original called')
        def filter2d(x, f, **kw): raise AssertionError('original called')
        def upsample2d(x, f, **kw): raise AssertionError('original called')
        def downsample2d(x, f, **kw): raise AssertionError('original called')
    """))
    (d / "bias_act.py").write_text("def bias_act(x, **kw): raise AssertionError('original called')\n")
    (root / "user_net.py").write_text(textwrap.dedent(f"""
        from {pkg}.ops import upfirdn2d
        from {pkg}.ops.bias_act import bias_act
        def block(x, f):
            return bias_act(upfirdn2d.upsample2d(x, f), act='lrelu', impl='cuda')
    """))


def test_patch_nvlabs_replaces_ops(tmp_path, monkeypatch):
    pkg = "torch_utils_fake_compat"
    _write_fake(tmp_path, pkg)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import user_net
        patched = fastgan.compat.patch_nvlabs(pkg)
        assert f"{pkg}.ops.upfirdn2d.upsample2d" in patched and f"{pkg}.ops.bias_act.bias_act" in patched
        f = ops.setup_filter([1, 3, 3, 1])
        x = torch.randn(2, 3, 8, 8)
        y = user_net.block(x, f)     # user code now runs fastgan (impl='cuda' on CPU = fastest available)
        expected = ops.bias_act(ops.upsample2d(x, f, impl="ref"), act="lrelu", impl="ref")
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    finally:
        for m in [m for m in sys.modules if m.startswith(pkg) or m == "user_net"]:
            del sys.modules[m]


def test_patch_nvlabs_missing_package():
    import pytest
    with pytest.raises(ModuleNotFoundError):
        fastgan.compat.patch_nvlabs("no_such_torch_utils_pkg")


def test_patch_nvlabs_network_modconv(tmp_path, monkeypatch):
    pkg, train = "torch_utils_fake_net", "training_fake_net"
    _write_fake(tmp_path, pkg)
    (tmp_path / train).mkdir()
    (tmp_path / train / "__init__.py").write_text("")
    (tmp_path / train / "networks_stylegan2.py").write_text(
        "def modulated_conv2d(x, weight, styles, **kw): raise AssertionError('original called')\n"
        "def layer(x, w, s): return modulated_conv2d(x, w, s, padding=1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import importlib
        net = importlib.import_module(f"{train}.networks_stylegan2")
        patched = fastgan.compat.patch_nvlabs(pkg, training_package=train)
        assert f"{train}.networks_stylegan2.modulated_conv2d" in patched
        x, w, s = torch.randn(2, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(2, 4)
        torch.testing.assert_close(net.layer(x, w, s), ops.modulated_conv2d(x, w, s, padding=1, impl="ref"),
                                   rtol=1e-4, atol=1e-4)
    finally:
        for m in [m for m in sys.modules if m.startswith((pkg, train)) or m == "user_net"]:
            del sys.modules[m]
