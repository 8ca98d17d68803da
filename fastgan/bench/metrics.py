"""Metrics benchmarks (``fastgan bench metrics``): Fréchet distance, streaming statistics, Inception extraction.

1. Fréchet distance at d=2048 (quick: 512): fastgan's eigh/Cholesky path (numpy and torch) against the
   ``scipy.linalg.sqrtm`` computation of pytorch-fid/NVlabs, with the relative difference of the values
   (the three run in alternation, up to 3 rounds; medians).
2. Statistics of 50,000 x 2048 float32 features (quick: 10,000 x 512) streamed through FeatureStats in
   batches of 1,000, against ``numpy.cov`` on the whole float64 matrix already in memory (the two run
   in alternation, up to 3 rounds; medians).
3. Inception-v3 extraction in images/s: fp32 NCHW, fp32 channels_last, bf16 autocast + channels_last, and
   the FID drift bf16 causes on a fixed image set. Weights are random (timing does not depend on them;
   the drift with the published weights will differ: it is measured here only as an order of magnitude).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from . import interleaved_medians, median_seconds


def _spd_pair(d: int, seed: int = 0) -> Tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        a = rng.standard_normal((d, d)) / np.sqrt(d)
        out += [rng.standard_normal(d) * 0.1, a @ a.T + 0.05 * np.eye(d)]   # condition number ~ 100
    return tuple(out)


def bench_frechet(d: int, repeat: int) -> List[Dict]:
    from ..metrics.frechet import frechet_distance

    mu1, s1, mu2, s2 = _spd_pair(d)
    t1 = [torch.from_numpy(a) for a in (mu1, s1, mu2, s2)]
    impls = [("scipy sqrtm (reference)", lambda: frechet_distance(mu1, s1, mu2, s2, method="scipy")),
             ("fastgan eigh (numpy)", lambda: frechet_distance(mu1, s1, mu2, s2)),
             ("fastgan eigh (torch cpu)", lambda: frechet_distance(*t1))]
    # in alternating rounds (medians); the scipy reference takes ~15 s a call here, so at most 3 rounds
    values: List[float] = []
    times = interleaved_medians([fn for _, fn in impls], rounds=max(1, min(repeat, 3)), results=values)
    ref = values[0]
    rows = []
    for (name, _), t, v in zip(impls, times, values):
        rows.append({"case": f"frechet d={d}", "impl": name, "seconds": t, "speedup": times[0] / t, "value": v,
                     "rel_diff": abs(v - ref) / abs(ref)})
    return rows


def bench_stats(n: int, d: int, repeat: int, batch: int = 1000) -> List[Dict]:
    from ..metrics import stats as stats_mod
    from ..metrics.stats import FeatureStats

    x32 = np.random.default_rng(1).standard_normal((n, d), dtype=np.float32) * 0.5 + 0.3
    x64 = x32.astype(np.float64)

    def stream():
        st = FeatureStats()
        for i in range(0, n, batch):
            st.append(torch.from_numpy(x32[i:i + batch]))
        return st.mean_cov()

    outs: List[object] = []
    t_np, t_st = interleaved_medians([lambda: np.cov(x64, rowvar=False), stream], rounds=max(1, min(repeat, 3)),
                                     results=outs)
    saved = stats_mod._dsyrk
    stats_mod._dsyrk = lambda: None
    try:
        t_blk = median_seconds(stream, repeat=1, warmup=0)
    finally:
        stats_mod._dsyrk = saved
    err = float(np.abs(outs[1][1] - outs[0]).max())
    case = f"stats {n}x{d}"
    return [{"case": case, "impl": "numpy.cov (in memory, float64)", "seconds": t_np, "speedup": 1.0},
            {"case": case, "impl": f"FeatureStats dsyrk, batches of {batch}", "seconds": t_st,
             "speedup": t_np / t_st, "max_abs_diff": err},
            {"case": case, "impl": "FeatureStats blocked torch (no scipy)", "seconds": t_blk, "speedup": t_np / t_blk}]


def bench_inception(batch: int, n_drift: int, repeat: int) -> List[Dict]:
    from ..metrics.features import ImageArray, compute_features
    from ..metrics.frechet import frechet_distance
    from ..metrics.inception import InceptionV3FID

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    net = InceptionV3FID()
    for m in net.modules():     # He init keeps activations O(1) through the depth (default init shrinks them)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    net = net.fuse_batchnorm().to(device)
    imgs = torch.randint(0, 256, (batch, 3, 256, 256), dtype=torch.uint8, device=device)
    rows = []
    base = None
    for name, cl, amp in (("fp32 NCHW", False, None), ("fp32 channels_last", True, None),
                          ("bf16 autocast channels_last", True, torch.bfloat16)):
        net = net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)

        def run():
            with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                out = net(imgs)["pool"]
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out

        t = median_seconds(run, repeat=repeat, warmup=1)
        base = base or t
        rows.append({"case": f"inception {device.type} batch={batch} 256->299", "impl": name,
                     "images_per_s": batch / t, "speedup": base / t})
    # FID drift from bf16 on a fixed image set: smooth random images vs the same kind with more contrast.
    g = torch.Generator().manual_seed(1)
    low = torch.rand(2 * n_drift, 3, 8, 8, generator=g)
    low[n_drift:] = (low[n_drift:] - 0.5) * 1.6 + 0.5
    fixed = (torch.nn.functional.interpolate(low, size=64, mode="bilinear").clamp(0, 1) * 255).to(torch.uint8)
    feats = {}
    for amp in (None, "bf16"):
        f = compute_features(ImageArray(fixed), net, device=device, batch_size=batch, autocast=amp)["pool"].double()
        feats[amp] = f
    fids = []
    for f in feats.values():
        a, b = f[:n_drift].numpy(), f[n_drift:].numpy()
        fids.append(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))
    rel_feat = float(((feats["bf16"] - feats[None]).norm(dim=1) / feats[None].norm(dim=1)).max())
    rows.append({"case": f"bf16 drift, {n_drift} vs {n_drift} images (random weights)", "impl": "bf16 vs fp32",
                 "fid_fp32": fids[0], "fid_bf16": fids[1], "fid_rel_drift": abs(fids[1] - fids[0]) / abs(fids[0]),
                 "max_rel_feature_err": rel_feat})
    return rows


def format_rows(rows: List[Dict]) -> str:
    out = []
    for r in rows:
        extras = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r.items() if k not in ("case", "impl"))
        out.append(f"{r['case']:34s} {r['impl']:40s} {extras}")
    return "\n".join(out)


def run(quick: bool = False, repeat: int = 5):
    """The ``fastgan bench metrics`` suite: returns (table text, JSON-able dict)."""
    rows: List[Dict] = []
    if quick:
        rows += bench_frechet(512, repeat)
        rows += bench_stats(10000, 512, repeat)
        rows += bench_inception(batch=2, n_drift=8, repeat=1)
    else:
        rows += bench_frechet(2048, repeat)
        rows += bench_stats(50000, 2048, repeat)
        rows += bench_inception(batch=8, n_drift=64, repeat=min(repeat, 3))
    head = f"machine: {torch.get_num_threads()} torch threads; timings are single runs on this machine"
    return head + "\n" + format_rows(rows), {"rows": rows, "threads": torch.get_num_threads()}
