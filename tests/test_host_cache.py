"""The opt-in host-cache arena (csrc/cpu/host_cache.cpp, fastgan.backends.host_cache): torch's CPU
allocator is untouched on default paths; an explicit arena is thread- and fork-safe and releases its
cached blocks when it closes."""
import os
import pickle
import threading

import pytest
import torch

from fastgan import backends
from fastgan.backends import host_cache

pytestmark = pytest.mark.skipif(not host_cache.available(), reason="fastgan._C is not built (no host cache)")

BIG = 3 << 20   # bytes: above the 1 MiB threshold; the arena rounds it to 4 MiB
ROUNDED = 4 << 20
# Forwards running concurrently may split cpu reductions across a different number of threads.
TOL = dict(rtol=1e-5, atol=1e-5)


def _big(value: float = 0.0) -> torch.Tensor:
    return torch.full((BIG // 4,), value, dtype=torch.float32)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("FASTGAN_HOST_CACHE_MB", raising=False)
    saved = host_cache._limit
    assert not host_cache.stats()["enabled"], "a previous test left an arena open"
    yield
    host_cache._limit = saved
    assert not host_cache.stats()["installed"]


@pytest.fixture(scope="module")
def small_g():
    from fastgan.nets import stylegan2

    torch.manual_seed(0)
    # batch 4 x 64 channels at 32x32: activations of 1 MiB and more, the sizes the arena serves
    G = stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                            channel_base=4096, channel_max=64, mapping_kwargs={"num_layers": 2}).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn(4, 32, generator=torch.Generator().manual_seed(1)), None)
        with backends.use("ref"):
            want = G.synthesis(ws, noise_mode="const")
    return G, ws, want


def _synth(G, ws):
    with torch.no_grad(), backends.use("cpu"):
        return G.synthesis(ws, noise_mode="const")


# ---- default paths ---------------------------------------------------------------------------------


def test_default_cpu_forwards_leave_the_allocator_alone(small_g):
    from fastgan.nets import stylegan2

    G, ws, want = small_g
    D = stylegan2.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=4096, channel_max=64)
    seen = []
    hooks = [m.register_forward_pre_hook(lambda *_: seen.append(host_cache.stats()))
             for m in (G.synthesis.b32, D.b4)]
    try:
        before = host_cache.stats()
        img = _synth(G, ws)
        with torch.no_grad(), backends.use("cpu"):
            D(img, None)
    finally:
        for h in hooks:
            h.remove()
    assert len(seen) == 2
    for s in seen + [host_cache.stats()]:
        assert not s["enabled"] and not s["installed"]
        assert (s["hits"], s["misses"], s["live_bytes"]) == (before["hits"], before["misses"], before["live_bytes"])
    torch.testing.assert_close(img, want, rtol=1e-4, atol=1e-4)


def test_threads_during_default_cpu_forwards(small_g):
    """Two threads run G forwards while a third allocates large tensors: correct images, no swap."""
    G, ws, want = small_g
    expected = _synth(G, ws)
    start = threading.Barrier(3)
    out, errors, installed = {}, [], []

    def forward(k):
        try:
            start.wait()
            out[k] = [_synth(G, ws) for _ in range(2)]
            installed.append(host_cache.stats()["installed"])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def allocate():
        try:
            start.wait()
            for i in range(20):
                t = _big(float(i))
                assert t[-1].item() == i
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=forward, args=(k,)) for k in range(2)] + [threading.Thread(target=allocate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert installed == [False, False]
    for imgs in out.values():
        for img in imgs:
            torch.testing.assert_close(img, expected, **TOL)
    torch.testing.assert_close(expected, want, rtol=1e-4, atol=1e-4)


def _in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box


# ---- the arena -------------------------------------------------------------------------------------


def test_arena_installs_for_its_scope_and_nests():
    assert not host_cache.stats()["installed"]
    with host_cache.arena():
        assert host_cache.stats()["enabled"] and host_cache.stats()["installed"]
        with host_cache.arena():
            assert host_cache.stats()["installed"]
        assert host_cache.stats()["installed"]
    s = host_cache.stats()
    assert not s["enabled"] and not s["installed"]


def test_arena_closes_on_error():
    with pytest.raises(KeyError):
        with host_cache.arena():
            raise KeyError("boom")
    assert not host_cache.stats()["installed"]


def test_freed_block_is_reused():
    with host_cache.arena():
        a = _big()
        ptr = a.data_ptr()
        s0 = host_cache.stats()
        assert s0["live_bytes"] == ROUNDED
        del a
        assert host_cache.stats()["cached_bytes"] == ROUNDED
        b = _big()
        s1 = host_cache.stats()
        assert b.data_ptr() == ptr
        assert (s1["hits"], s1["misses"]) == (s0["hits"] + 1, s0["misses"])
        del b


def test_blocks_are_2mib_aligned_and_hold_data():
    with host_cache.arena():
        a = torch.arange(BIG // 4, dtype=torch.float32)
        assert a.data_ptr() % (2 << 20) == 0
    assert a[-1].item() == BIG // 4 - 1
    torch.testing.assert_close(a * 2, torch.arange(BIG // 4, dtype=torch.float32) * 2, rtol=0, atol=0)


def test_small_tensors_bypass_the_arena():
    with host_cache.arena():
        s0 = host_cache.stats()
        x = torch.ones(1000)
        s1 = host_cache.stats()
    assert (s1["hits"], s1["misses"], s1["live_bytes"]) == (s0["hits"], s0["misses"], s0["live_bytes"])
    assert x.sum().item() == 1000


def test_footprint_is_released_at_exit():
    with host_cache.arena():
        kept = _big(7.0)
        for _ in range(3):
            scratch = [_big(), torch.empty(5 << 20, dtype=torch.uint8)]
            del scratch
        inside = host_cache.stats()
        assert inside["cached_bytes"] > 0 and inside["live_bytes"] == ROUNDED
    after = host_cache.stats()
    assert after["cached_bytes"] == 0 and after["live_bytes"] == ROUNDED
    assert kept.sum().item() == 7.0 * (BIG // 4)   # outlives the arena
    del kept
    final = host_cache.stats()
    assert final["cached_bytes"] == 0 and final["live_bytes"] == 0   # unmapped, not cached


def test_limit_bounds_the_cache():
    with host_cache.arena(limit_bytes=0):
        a = _big()
        del a
        assert host_cache.stats()["cached_bytes"] == 0   # over the limit: unmapped at once
    with host_cache.arena(limit_bytes=ROUNDED):
        a, b = _big(), _big()
        del a, b
        assert host_cache.stats()["cached_bytes"] == ROUNDED
        host_cache.empty()
        assert host_cache.stats()["cached_bytes"] == 0
        assert host_cache.stats()["installed"]   # empty() keeps the arena open


def test_set_limit_persists_across_forwards_and_arenas(small_g):
    G, ws, _ = small_g
    host_cache.set_limit(12 << 20)
    _synth(G, ws)
    assert host_cache.stats()["limit_bytes"] == 12 << 20
    with host_cache.arena():
        _synth(G, ws)
        assert host_cache.stats()["limit_bytes"] == 12 << 20
        with host_cache.arena(limit_bytes=0):   # a scope's own limit wins while it is innermost
            assert host_cache.stats()["limit_bytes"] == 0
            a = _big()
            del a
            assert host_cache.stats()["cached_bytes"] == 0
        assert host_cache.stats()["limit_bytes"] == 12 << 20
        a = _big()
        del a
        assert host_cache.stats()["cached_bytes"] == ROUNDED
    with host_cache.arena():
        assert host_cache.stats()["limit_bytes"] == 12 << 20
    _synth(G, ws)
    assert host_cache.stats()["limit_bytes"] == 12 << 20


def test_limits_are_validated(monkeypatch):
    with pytest.raises(ValueError, match="nbytes"):
        host_cache.set_limit(-1)
    with pytest.raises(TypeError, match="nbytes"):
        host_cache.set_limit(1.5)
    with pytest.raises(ValueError, match="limit_bytes"):
        with host_cache.arena(limit_bytes=-1):
            pass
    with pytest.raises(TypeError, match="limit_bytes"):
        with host_cache.arena(limit_bytes="1G"):
            pass
    monkeypatch.setenv("FASTGAN_HOST_CACHE_MB", "lots")
    host_cache._limit = None
    with pytest.raises(ValueError, match="FASTGAN_HOST_CACHE_MB"):
        with host_cache.arena():
            pass
    monkeypatch.setenv("FASTGAN_HOST_CACHE_MB", "16")
    assert not host_cache.stats()["installed"]
    with host_cache.arena():
        assert host_cache.stats()["limit_bytes"] == 16 << 20


def test_paused_bypasses_the_arena_and_keeps_its_cache():
    with host_cache.paused():   # no arena: nothing to pause
        assert not host_cache.stats()["installed"]
    with host_cache.arena():
        a = _big()
        del a
        s0 = host_cache.stats()
        assert s0["cached_bytes"] == ROUNDED
        with host_cache.paused():
            with host_cache.paused():   # nests
                b = _big(5.0)
            c = _big()
            s1 = host_cache.stats()
            assert (s1["hits"], s1["misses"], s1["live_bytes"]) == (s0["hits"], s0["misses"], 0)
            assert s1["cached_bytes"] == ROUNDED and s1["installed"]
        d = _big()   # served again, from the block cached before the pause
        s2 = host_cache.stats()
        assert s2["hits"] == s0["hits"] + 1 and s2["live_bytes"] == ROUNDED
        assert b.sum().item() == 5.0 * (BIG // 4)
        box = _in_thread(lambda: host_cache.paused().__enter__())
        assert isinstance(box.get("error"), RuntimeError) and "another thread" in str(box["error"])
        del c, d


# ---- threads ---------------------------------------------------------------------------------------


def test_another_thread_cannot_open_an_arena():
    def try_open():
        with host_cache.arena():
            return "opened"

    with host_cache.arena():
        box = _in_thread(try_open)
        assert isinstance(box.get("error"), RuntimeError)
        assert "another thread" in str(box["error"])
        assert host_cache.stats()["installed"]
    assert _in_thread(try_open) == {"value": "opened"}   # free again once closed


def test_arena_serves_only_its_thread_and_takes_frees_from_any():
    with host_cache.arena():
        held, release = threading.Event(), threading.Event()

        def hold_big():
            t = _big(3.0)
            held.set()
            release.wait()
            return t.sum().item()

        box = {}
        worker = threading.Thread(target=lambda: box.update(sum=hold_big()))
        worker.start()
        held.wait()
        assert host_cache.stats()["live_bytes"] == 0   # the other thread's tensor is not the arena's
        release.set()
        worker.join()
        assert box["sum"] == 3.0 * (BIG // 4)
        mine = _big()
        assert host_cache.stats()["live_bytes"] == ROUNDED
        box2 = {"t": mine}
        del mine
        _in_thread(lambda: box2.clear())   # freed from another thread: back into the cache
        s = host_cache.stats()
        assert s["live_bytes"] == 0 and s["cached_bytes"] == ROUNDED


def test_threads_during_a_forward_inside_an_arena(small_g):
    """One thread runs G forwards inside its arena, a second runs them without, a third allocates."""
    G, ws, _ = small_g
    expected = _synth(G, ws)
    start = threading.Barrier(3)
    out, errors, served = {}, [], []
    before = host_cache.stats()

    def owner():
        try:
            with host_cache.arena():
                start.wait()
                out["arena"] = [_synth(G, ws) for _ in range(3)]
                s = host_cache.stats()
                served.append(s["hits"] + s["misses"] - before["hits"] - before["misses"])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def plain():
        try:
            start.wait()
            out["plain"] = [_synth(G, ws) for _ in range(3)]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def allocate():
        try:
            start.wait()
            for i in range(20):
                t = _big(float(i))
                assert t[-1].item() == i
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (owner, plain, allocate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert served[0] > 0   # the owner's forwards went through its arena
    for imgs in out.values():
        for img in imgs:
            torch.testing.assert_close(img, expected, **TOL)
    assert not host_cache.stats()["installed"]
    del out
    assert host_cache.stats()["live_bytes"] == 0 and host_cache.stats()["cached_bytes"] == 0


# ---- fork ------------------------------------------------------------------------------------------


class _ForwardInWorker(torch.utils.data.Dataset):
    """Each item: the arena state the worker starts with, a default forward, and a forward in the
    worker's own arena."""

    def __init__(self, G, ws):
        self.G, self.ws = G, ws

    def __len__(self):
        return 2

    def __getitem__(self, i):
        start = host_cache.stats()
        plain = _synth(self.G, self.ws)
        with host_cache.arena():
            own_open = host_cache.stats()["installed"]
            mine = _synth(self.G, self.ws)
            keep = _big(1.0)
            del keep
            own_cached = host_cache.stats()["cached_bytes"]
        end = host_cache.stats()
        return {"start": [start["enabled"], start["installed"], start["cached_bytes"]], "plain": plain,
                "mine": mine, "own": [own_open, own_cached], "end": [end["enabled"], end["installed"],
                                                                     end["cached_bytes"]]}


def test_forked_dataloader_worker_inside_an_arena(small_g):
    G, ws, want = small_g
    expected = _synth(G, ws)
    loader = torch.utils.data.DataLoader(_ForwardInWorker(G, ws), batch_size=None, num_workers=1,
                                         multiprocessing_context="fork")
    with host_cache.arena():
        warm = _big()
        del warm
        assert host_cache.stats()["cached_bytes"] == ROUNDED
        items = list(loader)
        s = host_cache.stats()
        assert s["installed"] and s["cached_bytes"] == ROUNDED   # the parent's arena is unaffected
    assert len(items) == 2
    for item in items:
        assert item["start"] == [False, False, 0]   # the child starts with no arena and no cached blocks
        assert item["own"][0] is True and item["own"][1] >= ROUNDED   # and may open its own
        assert item["end"] == [False, False, 0]
        torch.testing.assert_close(item["plain"], expected, **TOL)
        torch.testing.assert_close(item["mine"], expected, **TOL)
    torch.testing.assert_close(expected, want, rtol=1e-4, atol=1e-4)


def test_fork_inside_an_arena_leaves_the_child_without_one():
    """os.fork inside an arena: the child starts without one, may open its own, and unwinding the
    scope it inherited neither fails nor touches anything."""
    parent = os.getpid()
    notes = {}

    def fork_in_arena():
        with host_cache.arena():
            kept = _big(2.0)
            pid = os.fork()
            if pid == 0:
                torch.set_num_threads(1)   # the parent's OpenMP workers do not exist in the child
                notes["start"] = host_cache.stats()
                with host_cache.arena():
                    notes["own"] = host_cache.stats()["installed"]
            else:
                notes["parent"] = host_cache.stats()["installed"]
        return pid, kept

    read_end, write_end = os.pipe()
    try:
        pid, kept = fork_in_arena()
    except BaseException as e:  # noqa: BLE001 - the child reports it; the parent re-raises
        if os.getpid() == parent:
            raise
        notes, pid = {"error": repr(e)}, 0
    if pid == 0:   # child: never return into pytest
        try:
            if "error" not in notes:
                notes["after"] = host_cache.stats()
                notes["kept"] = kept.sum().item()   # inherited tensors stay valid in the child
        except BaseException as e:  # noqa: BLE001
            notes = {"error": repr(e)}
        finally:
            os.write(write_end, pickle.dumps(notes))
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        report = pickle.loads(f.read())
    os.waitpid(pid, 0)
    assert "error" not in report, report.get("error")
    assert notes["parent"] is True and not host_cache.stats()["installed"]
    assert not report["start"]["enabled"] and not report["start"]["installed"]
    assert report["start"]["cached_bytes"] == 0
    assert report["own"] is True
    assert not report["after"]["enabled"] and not report["after"]["installed"]
    assert report["after"]["cached_bytes"] == 0
    assert report["kept"] == 2.0 * (BIG // 4)
    del kept
    assert host_cache.stats()["live_bytes"] == 0
