"""The safe NVlabs pickle loader: golden networks round-trip through NVlabs-format pickles; hostile
pickles are refused with UnsafePickleError naming the global, and nothing in them ever runs."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastgan
from fastgan.serialize import PersistentRecord, UnsafePickleError, read_pickle, safe_load
from fastgan.serialize.safe_pickle import record_state_dict

from golden import golden_network, npz
from nvlabs_pickle import ADA_SRC, SG2_SRC, SG3_SRC, nvlabs_globals, record, snapshot_bytes
from test_nets_golden import golden_net, io as golden_io, manifest


def _write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _snapshot(tmp_path, g_name="sg2_G_c0_skip", d_name="sg2_D_c0_resnet", protocol=4, src=None):
    G, D = golden_net(g_name), golden_net(d_name)
    nets = manifest()["networks"]
    src = src or (SG3_SRC if g_name.startswith("sg3") else SG2_SRC)
    data = snapshot_bytes(G, D, nets[g_name]["init_kwargs"], nets[d_name]["init_kwargs"], module_src=src,
                          protocol=protocol)
    return _write(tmp_path, f"{g_name}-p{protocol}.pkl", data)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_record_state_dict_is_the_golden_state_dict(tmp_path, protocol):
    path = _snapshot(tmp_path, protocol=protocol)
    data = read_pickle(path)
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert data["augment_pipe"] is None and data["training_set_kwargs"]["resolution"] == 32
    assert type(data["training_set_kwargs"]) is dict  # EasyDict became a plain dict
    rec = data["G_ema"]
    assert isinstance(rec, PersistentRecord) and rec.class_name == "Generator"
    assert rec.init_kwargs == golden_network("sg2_G_c0_skip")["init_kwargs"]
    sd = record_state_dict(rec)
    gold = npz("sg2_G_c0_skip.state_dict.npz")
    assert list(sd) == list(gold)
    for k, v in gold.items():
        assert torch.equal(sd[k], torch.from_numpy(v)), k


@pytest.mark.parametrize("g_name", ["sg2_G_c5_skip", "sg3_G_T"])
def test_load_network_generator_matches_golden(tmp_path, g_name):
    path = _snapshot(tmp_path, g_name=g_name)
    G = fastgan.load_network(path)
    assert type(G).__module__ == ("fastgan.nets.stylegan3" if g_name.startswith("sg3") else "fastgan.nets.stylegan2")
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    ref = golden_net(g_name)
    for (k, a), (k2, b) in zip(G.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    d = golden_io(g_name)
    ws = torch.from_numpy(d["ws/psi1"][:1])
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), ref.synthesis(ws, noise_mode="const"),
                               rtol=0, atol=0)


def test_load_network_discriminator_key(tmp_path):
    path = _snapshot(tmp_path)
    D = fastgan.load_network(path, key="D")
    d = golden_io("sg2_D_c0_resnet")
    torch.testing.assert_close(D(torch.from_numpy(d["img"][:4]), None),
                               golden_net("sg2_D_c0_resnet")(torch.from_numpy(d["img"][:4]), None), rtol=0, atol=0)
    with pytest.raises(KeyError, match="augment_pipe"):
        fastgan.load_network(path, key="augment_pipe")


def test_family_detection_uses_structure_when_source_is_silent(tmp_path):
    path = _snapshot(tmp_path, g_name="sg3_G_R", src="# source text without markers\n")
    assert type(fastgan.load_network(path)).__module__ == "fastgan.nets.stylegan3"


def test_module_src_is_never_executed(tmp_path):
    sentinel = tmp_path / "PWNED"
    src = f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('ran')\n" + SG2_SRC
    path = _snapshot(tmp_path, src=src)
    G = fastgan.load_network(path)
    assert isinstance(G, torch.nn.Module)
    assert not sentinel.exists()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _hostile_cases(sentinel):
    cmd = f"touch {sentinel}"
    return {
        "os.system": (_Reduce(os.system, cmd), "system"),
        "eval": (_Reduce(eval, f"open({str(sentinel)!r}, 'w')"), "builtins.eval"),
        "exec": (_Reduce(exec, f"open({str(sentinel)!r}, 'w')"), "builtins.exec"),
        "subprocess": (_Reduce(subprocess.call, ["touch", str(sentinel)]), "subprocess.call"),
        "getattr": (_Reduce(getattr, _Reduce(__import__, "os"), "system"), "builtins.getattr"),
        "torch.load": (_Reduce(torch.load, str(sentinel)), "torch"),
    }


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("case", ["os.system", "eval", "exec", "subprocess", "getattr", "torch.load"])
def test_hostile_globals_are_refused(tmp_path, case, protocol):
    sentinel = tmp_path / "PWNED"
    obj, name = _hostile_cases(sentinel)[case]
    data = pickle.dumps({"G_ema": obj}, protocol=protocol)
    path = _write(tmp_path, "evil.pkl", data)
    with pytest.raises(UnsafePickleError, match=f"refused global .*{name}"):
        fastgan.load_network(path)
    with pytest.raises(UnsafePickleError):
        safe_load(io.BytesIO(data))
    assert not sentinel.exists()


def test_hostile_payload_nested_in_a_persistent_record_is_refused(tmp_path):
    sentinel = tmp_path / "PWNED"
    G = golden_net("sg2_G_c0_skip")
    rec = record(G, SG2_SRC, {})
    rec.meta["state"]["evil"] = _Reduce(os.system, f"touch {sentinel}")
    with nvlabs_globals():
        data = pickle.dumps({"G_ema": rec}, protocol=4)
    with pytest.raises(UnsafePickleError, match="system"):
        fastgan.load_network(_write(tmp_path, "evil.pkl", data))
    assert not sentinel.exists()


def test_other_torch_and_numpy_globals_are_refused():
    for module, name in [("torch_utils.persistence", "import_hook"), ("numpy", "load"), ("torch", "load"),
                         ("torch._utils", "_rebuild_qtensor"), ("collections", "defaultdict"),
                         ("builtins", "__import__"), ("copyreg", "_reconstructor")]:
        data = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c" + bytes([len(module)]) + module.encode() \
            + b"\x94\x8c" + bytes([len(name)]) + name.encode() + b"\x94\x93\x94."
        with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
            safe_load(io.BytesIO(data))


def test_persistent_ids_and_bad_records_are_refused():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if isinstance(obj, str) and obj == "x" else None

    buf = io.BytesIO()
    P(buf, protocol=4).dump(["x"])
    with pytest.raises(UnsafePickleError, match="persistent id"):
        safe_load(io.BytesIO(buf.getvalue()))
    from nvlabs_pickle import Persistent
    with nvlabs_globals():
        data = pickle.dumps(Persistent({"type": "module", "module_src": "x", "state": {}}), protocol=4)
    with pytest.raises(UnsafePickleError, match="only 'class' records"):
        safe_load(io.BytesIO(data))


def test_numpy_and_set_values_survive(tmp_path):
    values = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5), "set": {1, 2},
              "fs": frozenset([3]), "b": b"\x00\x01", "dev": torch.device("cpu"), "dt": torch.bfloat16,
              "h": torch.ones(2, dtype=torch.float16)}
    for protocol in (2, 4, 5):
        out = safe_load(io.BytesIO(pickle.dumps(values, protocol=protocol)))
        assert np.array_equal(out["a"], values["a"]) and out["s"] == 2.5 and out["set"] == {1, 2}
        assert out["fs"] == frozenset([3]) and out["b"] == b"\x00\x01"
        assert (out["dev"], out["dt"]) == (torch.device("cpu"), torch.bfloat16)
        assert torch.equal(out["h"], values["h"])
    assert safe_load(io.BytesIO(pickle.dumps([torch.channels_last], protocol=4))) == [torch.channels_last]
    # object arrays unpickle their elements through the same restricted find_class
    evil = np.array([None, _Reduce(os.system, "true")], dtype=object)
    with pytest.raises(UnsafePickleError, match="system"):
        safe_load(io.BytesIO(pickle.dumps(evil, protocol=4)))


def test_stylegan2_ada_pickle_with_synthesis_kwargs(tmp_path):
    """StyleGAN2-ADA's training/networks.py: synthesis kwargs in a nested dict (lineage defaults:
    tests/test_snapshots.py)."""
    kw = dict(golden_network("sg2_G_c0_skip")["init_kwargs"])
    syn = {k: kw.pop(k) for k in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp")}
    G = golden_net("sg2_G_c0_skip")
    data = snapshot_bytes(G, None, {**kw, "synthesis_kwargs": syn}, module_src=ADA_SRC)
    H = fastgan.load_network(_write(tmp_path, "ada.pkl", data))
    ws = torch.from_numpy(golden_io("sg2_G_c0_skip")["ws/psi1"])
    torch.testing.assert_close(H.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"), rtol=0, atol=0)
    assert H.mapping.w_avg_beta == 0.5  # recorded kwargs win over the ADA default (0.995)
    assert "synthesis_kwargs" not in H.init_kwargs and H.init_kwargs["channel_base"] == syn["channel_base"]


def test_load_whole_snapshot(tmp_path):
    nets = fastgan.load_network(_snapshot(tmp_path), key=None)
    assert type(nets["G"]).__name__ == "Generator" and type(nets["D"]).__name__ == "Discriminator"
    assert nets["augment_pipe"] is None and nets["training_set_kwargs"]["resolution"] == 32
