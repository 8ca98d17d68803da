"""fastgan.train.stats: per-tick num/mean/std against numpy, keep-previous, order, filters, cross-rank sums."""
import json
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgan.train import stats


def _expect(values):
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return {"num": v.size, "mean": v.mean(), "std": v.std()}  # population std (ddof 0)


def _assert_summary(got, values):
    want = _expect(values)
    assert got["num"] == want["num"] and isinstance(got["num"], int)
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-12, abs=1e-12)
    assert got["std"] == pytest.approx(want["std"], rel=1e-9, abs=1e-12)


def test_num_mean_std_over_reports_of_mixed_kinds():
    c = stats.Collector()
    a = torch.tensor([[0.5, -1.25], [3.0, 2.0]])
    stats.report("x", a)
    stats.report("x", 4)
    stats.report("x", [1.5, -0.75])
    stats.report("y", torch.arange(5, dtype=torch.float64))
    c.update()
    _assert_summary(c.as_dict()["x"], [0.5, -1.25, 3.0, 2.0, 4, 1.5, -0.75])
    _assert_summary(c.as_dict()["y"], [0, 1, 2, 3, 4])
    assert c.num("x") == 7 and c.mean("y") == 2.0 and c.std("y") == pytest.approx(math.sqrt(2.0))


def test_report_returns_input_and_detaches():
    c = stats.Collector()
    t = torch.ones(3, requires_grad=True) * 2
    assert stats.report("g", t) is t
    c.update()
    assert c.mean("g") == 2.0 and c.num("g") == 3


def test_counters_are_float64():
    # E[x^2] ~ 1e8: float32 sums would lose the 2/3 variance entirely (float32 ulp at 1e8 is 8).
    c = stats.Collector()
    vals = torch.tensor([10000.5, 10001.5, 10002.5], dtype=torch.float32)
    for v in vals:
        stats.report("big", v)
    c.update()
    assert c.mean("big") == 10001.5
    assert c.std("big") == pytest.approx(math.sqrt(2 / 3), rel=1e-6)


def test_std_edge_cases():
    c = stats.Collector(keep_previous=False)
    stats.report("one", torch.tensor([7.0]))
    stats.report("inf", torch.tensor([1.0, float("inf")]))
    stats.report("nan", torch.tensor([1.0, float("nan")]))
    stats.report("empty", torch.zeros(0))
    c.update()
    d = c.as_dict()
    assert d["one"] == {"num": 1, "mean": 7.0, "std": 0.0}
    assert d["inf"]["num"] == 2 and d["inf"]["mean"] == math.inf and math.isnan(d["inf"]["std"])
    assert d["nan"]["num"] == 2 and math.isnan(d["nan"]["mean"]) and math.isnan(d["nan"]["std"])
    assert d["empty"]["num"] == 0 and math.isnan(d["empty"]["mean"]) and math.isnan(d["empty"]["std"])
    json.dumps(d)  # plain Python numbers


def test_delta_per_tick_and_keep_previous():
    c = stats.Collector()
    stats.report("a", [1.0, 2.0])
    stats.report("b", [10.0])
    c.update()
    stats.report("a", [5.0])
    c.update()
    _assert_summary(c.as_dict()["a"], [5.0])             # only the new tick's values
    _assert_summary(c.as_dict()["b"], [10.0])            # nothing reported: previous values kept
    c.update()
    _assert_summary(c.as_dict()["a"], [5.0])


def test_without_keep_previous_silent_names_are_empty():
    c = stats.Collector(keep_previous=False)
    stats.report("a", [1.0, 2.0])
    c.update()
    c.update()
    assert c.num("a") == 0 and math.isnan(c.mean("a")) and math.isnan(c.std("a"))
    assert c.names() == ["a"]


def test_order_is_first_report_and_values_before_construction_are_ignored():
    stats.report("early", 1.0)
    c = stats.Collector()
    stats.report("m", 1.0)
    stats.report("k", 1.0)
    stats.report("m", 2.0)
    c.update()
    assert c.names() == ["m", "k"] and list(c.as_dict()) == ["m", "k"]
    stats.report("z", 0.0)
    stats.report("a", 0.0)
    stats.report("k", 3.0)
    c.update()
    assert list(c.as_dict()) == ["m", "k", "z", "a"]
    assert c.num("early") == 0 and math.isnan(c.mean("early"))


def test_regex_filter_and_independent_collectors():
    ada = stats.Collector(regex="Loss/signs/real")
    every = stats.Collector()
    stats.report("Loss/signs/real", [1.0, -1.0, 1.0])
    stats.report("Loss/signs/realx", [5.0])
    stats.report("Loss/scores/real", [0.3])
    ada.update()
    assert ada.names() == ["Loss/signs/real"] and ada.mean("Loss/signs/real") == pytest.approx(1 / 3)
    stats.report("Loss/signs/real", [-1.0])
    ada.update()
    assert ada.mean("Loss/signs/real") == -1.0
    every.update()  # its own tick: sees everything since its creation
    assert every.names() == ["Loss/signs/real", "Loss/signs/realx", "Loss/scores/real"]
    _assert_summary(every.as_dict()["Loss/signs/real"], [1.0, -1.0, 1.0, -1.0])


def test_report0_without_distributed_reports():
    c = stats.Collector()
    stats.report0("Progress/tick", 3)
    c.update()
    assert c.as_dict()["Progress/tick"] == {"num": 1, "mean": 3.0, "std": 0.0}


def test_bad_arguments():
    with pytest.raises(TypeError, match="name"):
        stats.report("", 1.0)
    with pytest.raises(TypeError, match="name"):
        stats.report(3, 1.0)
    with pytest.raises(TypeError, match="regex"):
        stats.Collector(regex=5)


def _worker(rank, world, store_path, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        c = stats.Collector()
        stats.report("shared", [1.0, 2.0] if rank == 0 else [4.0])
        if rank == 1:
            stats.report("only1", [6.0, 8.0])
        stats.report0("Progress/kimg", 1.5)
        c.update()
        first = c.as_dict()
        stats.report("only1", [2.0] if rank == 0 else [])
        c.update()
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump({"first": first, "second": c.as_dict()}, fh)
    finally:
        dist.destroy_process_group()


def test_two_process_sums_across_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.json") as fh:
            r = json.load(fh)
        assert list(r["first"]) == ["shared", "Progress/kimg", "only1"]
        _assert_summary(r["first"]["shared"], [1.0, 2.0, 4.0])
        _assert_summary(r["first"]["only1"], [6.0, 8.0])
        assert r["first"]["Progress/kimg"] == {"num": 1, "mean": 1.5, "std": 0.0}
        _assert_summary(r["second"]["only1"], [2.0])
        _assert_summary(r["second"]["shared"], [1.0, 2.0, 4.0])  # kept
