"""The benchmark helpers: alternating-round timing, and the metrics benches' accuracy columns on small sizes
(timings themselves are never asserted)."""
import itertools

import pytest

from fastgan.bench import conv_peak_case, interleaved_medians


def test_interleaved_medians_alternates_and_takes_medians(monkeypatch):
    calls = []
    clock = itertools.count()
    monkeypatch.setattr("fastgan.bench.time.perf_counter", lambda: float(next(clock)))

    def make(name, extra_ticks):
        def fn():
            calls.append(name)
            for _ in range(extra_ticks):
                next(clock)          # each extra tick is one more "second" of fake time
            return name * len(calls)
        return fn

    results = []
    meds = interleaved_medians([make("a", 0), make("b", 2)], rounds=3, warmup=1, results=results)
    assert calls == ["a", "b"] * 4            # warm-up round, then three alternating rounds
    # the fake clock advances once at the end of each timed call, plus each function's extra ticks
    assert meds == [1.0, 3.0]
    assert results == ["a" * 7, "b" * 8]      # the last round's return values


def test_conv_peak_case_counts_flops():
    run, flops = conv_peak_case((1, 8, 6, 6), 4, 3)
    assert tuple(run().shape) == (1, 4, 6, 6)
    assert flops == 2 * 1 * 4 * 8 * 9 * 6 * 6


def test_metrics_bench_rows_are_accurate():
    pytest.importorskip("scipy")
    from fastgan.bench.metrics import bench_frechet, bench_stats

    fr = bench_frechet(32, repeat=1)
    assert [r["impl"] for r in fr][0].startswith("scipy")
    assert all(r["rel_diff"] < 1e-9 for r in fr)
    st = bench_stats(600, 16, repeat=1, batch=100)
    assert st[1]["max_abs_diff"] < 1e-12 and len(st) == 3
