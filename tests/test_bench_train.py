"""``fastgan bench train --quick``: the harness runs the trainer's iteration and reports consistent rows.

Timings are not asserted (the host is shared); only the structure and the arithmetic between fields.
"""
from __future__ import annotations

import json
import math

import pytest

from fastgan.backends import host_cache
from fastgan.bench import train as bench_train
from fastgan.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quick_bench_rows(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["bench", "train", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = data["rows"]
    variants = {(r["case"], r["variant"]) for r in rows}
    sg2, sg3 = "StyleGAN2 8x8 (quick)", "StyleGAN3-T 16x16 (quick)"
    expected = {(sg2, "cpu fp32"), (sg2, "ref fp32"), (sg3, "cpu fp32"), (sg3, "ref fp32")}
    if data["native_bf16"]:
        expected.add((sg2, "cpu bf16"))
    if host_cache.available():
        expected.add((sg2, "cpu fp32 +hc"))
    assert variants == expected
    assert {r["variant"] for r in rows if r["host_cache"]} == ({"cpu fp32 +hc"} if host_cache.available() else set())
    assert ("bf16: native" in text) == data["native_bf16"]
    for r in rows:
        assert r["sec_per_kimg"] > 0 and r["img_per_s"] == pytest.approx(1000 / r["sec_per_kimg"])
        assert 0 <= r["data_share"] <= 1
        ms = r["ms_per_step"]
        phases = {"Gmain", "Greg", "Dmain", "Dreg"} if r["case"] == sg2 else {"Gboth", "Dmain", "Dreg"}
        assert set(ms) == {"data", "EMA", "ADA", "other"} | phases
        assert all(v >= 0 and math.isfinite(v) for v in ms.values())
        if r["backend"] == "ref":
            assert r["speedup_vs_ref"] == 1.0
        assert r["case"] in text
        assert len(r["rss_GB_per_round"]) == data["rounds"] and all(0 < g < 64 for g in r["rss_GB_per_round"])
        assert f"RSS after each round, {r['case']}: " in text
    assert data["steps_per_round"] == 2 and data["rounds"] == 2


def test_rss_reads_proc():
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
    assert 0.01 < bench_train.rss_gb() <= peak * 1.01


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(bench_train, "_cpu_flags", lambda: {"flags": "fpu sse avx2 avx512f"})
    assert bench_train.native_bf16() == (False, "the CPU lists neither avx512_bf16 nor amx_bf16")
    monkeypatch.setattr(bench_train, "_cpu_flags", lambda: {"flags": "avx512f avx512_bf16 amx_bf16"})
    assert bench_train.native_bf16() == (True, "amx_bf16, avx512_bf16")


def test_gpu_case_is_the_published_nvlabs_configuration(monkeypatch):
    """What a GPU host times: StyleGAN2 256x256, the auto recipe (batch 16 on 1 GPU, 4 fp16 resolutions with
    conv_clamp 256: NVlabs' default mixed precision) on every GPU backend and ref, beside the A100 number."""
    from fastgan import backends
    from fastgan.train.config import TrainConfig, resolve_config
    from test_trainer import FakeDataset

    monkeypatch.setattr(backends, "available", lambda name: name in ("cuda", "triton", "ref"))
    (name, options, variants), = bench_train._gpu_cases(quick=False)
    labels = [v.label for v in variants]
    assert name == "StyleGAN2 256x256 (auto)" and sorted(labels[:2]) == ["cuda fp16", "triton fp16"] and labels[2] == "ref fp16"
    options = dict(options)
    res = options.pop("resolution")
    rc = resolve_config(TrainConfig(data="x.zip", **options), dataset=FakeDataset(res))
    assert (res, rc.batch_size, rc.G_kwargs["channel_base"], rc.G_kwargs["mapping_kwargs"]["num_layers"]) == (256, 16, 16384, 2)
    assert (rc.G_kwargs["num_fp16_res"], rc.G_kwargs["conv_clamp"], rc.D_kwargs["num_fp16_res"]) == (4, 256, 4)
    assert bench_train.PUBLISHED_256 == {"A100": 12.53, "V100": 20.84}
    (_, quick, _), = bench_train._gpu_cases(quick=True)
    assert quick["resolution"] == 64 and quick["precision"] == "fp16"
