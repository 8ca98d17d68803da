"""Two gloo processes: all-reduced FeatureStats and gathered features equal the single-process results."""
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgan.metrics import FeatureStats
from fastgan.metrics.features import ImageArray, compute_features, compute_stats


class _Flat(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 2).flatten(1)


def _data():
    rng = np.random.default_rng(0)
    feats = (rng.standard_normal((301, 24)) * 0.5 + 10).astype(np.float32)
    images = rng.integers(0, 256, (13, 3, 6, 6), dtype=np.uint8)
    return feats, images


def _worker(rank, world, store_path, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        feats, images = _data()
        st = FeatureStats(dim=24)
        for i in range(rank * 7, len(feats), world * 7):          # interleaved uneven shards
            st.append(feats[i:i + 7])
        if rank == 1:
            st.append(feats[:0])
        st.all_reduce()
        mu, cov = st.mean_cov()
        src = ImageArray(images)
        pooled = compute_stats(src, _Flat(), batch_size=2, device="cpu", rank=rank, world_size=world)
        gathered = compute_features(src, _Flat(), batch_size=2, device="cpu", rank=rank, world_size=world)["pool"]
        np.savez(f"{out_dir}/rank{rank}.npz", n=st.n, mu=mu, cov=cov, pmu=pooled.mean(), pcov=pooled.cov(),
                 pn=pooled.n, gathered=gathered.numpy())
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    feats, images = _data()
    single = FeatureStats().append(feats)
    flat = _Flat()(torch.from_numpy(images)).numpy()
    for rank in range(2):
        with np.load(tmp_path / f"rank{rank}.npz") as r:
            assert int(r["n"]) == len(feats)
            np.testing.assert_allclose(r["mu"], single.mean(), rtol=1e-13)
            np.testing.assert_allclose(r["cov"], single.cov(), rtol=0, atol=1e-12 * np.abs(single.cov()).max())
            assert int(r["pn"]) == len(images)
            np.testing.assert_allclose(r["pmu"], flat.astype(np.float64).mean(0), rtol=1e-12)
            np.testing.assert_allclose(r["pcov"], np.cov(flat.astype(np.float64), rowvar=False), atol=1e-9)
            order = np.r_[np.arange(0, 13, 2), np.arange(1, 13, 2)]      # rank-major gather order
            np.testing.assert_allclose(r["gathered"], flat[order], rtol=1e-6)
