"""The caching host allocator (csrc/cpu/host_cache.cpp, fastgan.backends.host_cache)."""
import threading

import pytest
import torch

from fastgan import backends
from fastgan.backends import host_cache

pytestmark = pytest.mark.skipif(not host_cache.available(), reason="fastgan._C is not built (no host cache)")

BIG = 3 << 20   # bytes: above the 1 MiB threshold


def _big():
    return torch.empty(BIG // 4, dtype=torch.float32)


@pytest.fixture(autouse=True)
def _clean():
    host_cache.empty()
    yield
    host_cache.empty()


def test_scope_installs_and_removes_the_allocator():
    assert not host_cache.stats()["enabled"]
    with host_cache.scope():
        assert host_cache.stats()["enabled"]
        with host_cache.scope():   # nests
            assert host_cache.stats()["enabled"]
        assert host_cache.stats()["enabled"]
    assert not host_cache.stats()["enabled"]


def test_freed_block_is_reused():
    with host_cache.scope():
        a = _big()
        ptr = a.data_ptr()
        s0 = host_cache.stats()
        assert s0["live_bytes"] >= BIG
        del a
        assert host_cache.stats()["cached_bytes"] >= BIG
        b = _big()
        s1 = host_cache.stats()
        assert b.data_ptr() == ptr
        assert s1["hits"] == s0["hits"] + 1 and s1["misses"] == s0["misses"]


def test_blocks_are_2mib_aligned_and_hold_data():
    with host_cache.scope():
        a = torch.arange(BIG // 4, dtype=torch.float32)
    assert a.data_ptr() % (2 << 20) == 0
    assert a[-1].item() == BIG // 4 - 1
    torch.testing.assert_close(a * 2, torch.arange(BIG // 4, dtype=torch.float32) * 2)


def test_small_tensors_bypass_the_cache():
    with host_cache.scope():
        s0 = host_cache.stats()
        x = torch.ones(1000)
        s1 = host_cache.stats()
    assert (s1["hits"], s1["misses"], s1["live_bytes"]) == (s0["hits"], s0["misses"], s0["live_bytes"])
    assert x.sum().item() == 1000


def test_tensor_outlives_scope_and_returns_to_cache():
    with host_cache.scope():
        a = torch.full((BIG // 4,), 7.0)
    before = host_cache.stats()["cached_bytes"]
    assert a.sum().item() == 7.0 * (BIG // 4)
    del a
    assert host_cache.stats()["cached_bytes"] >= before + BIG


def test_limit_and_empty_release_memory():
    with host_cache.scope():
        a = _big()
        host_cache.set_limit(0)
        del a
        assert host_cache.stats()["cached_bytes"] == 0   # over the limit: freed at once
        host_cache.set_limit(1 << 30)
        b = _big()
        del b
        assert host_cache.stats()["cached_bytes"] > 0
        host_cache.empty()
        assert host_cache.stats()["cached_bytes"] == 0
    with pytest.raises(ValueError, match="nbytes"):
        host_cache.set_limit(-1)


def test_env_limit_is_validated(monkeypatch):
    monkeypatch.setenv("FASTGAN_HOST_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="FASTGAN_HOST_CACHE_MB"):
        with host_cache.scope():
            pass
    assert not host_cache.stats()["enabled"]
    monkeypatch.setenv("FASTGAN_HOST_CACHE_MB", "16")
    with host_cache.scope():
        assert host_cache.stats()["limit_bytes"] == 16 << 20


def test_threads_allocate_concurrently():
    errors = []

    def work(seed):
        try:
            for i in range(20):
                t = torch.full((BIG // 4 + 1024 * seed,), float(seed + i))
                if t[-1].item() != seed + i:
                    errors.append((seed, i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    with host_cache.scope():
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert host_cache.stats()["live_bytes"] == 0


def test_networks_use_the_cache_on_the_cpu_backend_only(monkeypatch):
    from fastgan.nets import stylegan2

    torch.manual_seed(0)
    G = stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                            channel_base=2048, channel_max=128, mapping_kwargs={"num_layers": 2}).eval()
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        with backends.use("ref"):
            s0 = host_cache.stats()
            ref = G.synthesis(ws, noise_mode="const")
            assert host_cache.stats()["misses"] == s0["misses"]   # ref never enters the cache
        with backends.use("cpu"):
            img = G.synthesis(ws, noise_mode="const")
            used = host_cache.stats()
            assert used["hits"] + used["misses"] > s0["hits"] + s0["misses"]
            monkeypatch.setenv("FASTGAN_HOST_CACHE", "0")
            plain = G.synthesis(ws, noise_mode="const")
            assert host_cache.stats()["misses"] == used["misses"]
    torch.testing.assert_close(img, plain, rtol=0, atol=0)
    torch.testing.assert_close(img, ref, rtol=1e-4, atol=1e-4)
