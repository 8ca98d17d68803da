"""``fastgan metrics``: named metrics (fid50k_full, kid50k_full, is50k, pr50k3_full, ...) of a generator.

Under ``torchrun --nproc_per_node N fastgan ...`` each rank makes its share of the images and the
statistics are all-reduced; rank 0 prints and writes the results.
"""
from __future__ import annotations

import json
import os


def add_extract_args(p) -> None:
    """Options shared by ``fastgan metrics``, ``fid`` and ``fid-stats``."""
    p.add_argument("--detector", metavar="PATH", help="Inception weights: pytorch-fid .pth or NVlabs TorchScript .pt "
                   "(default: $FASTGAN_INCEPTION_WEIGHTS, the cache, then a verified download)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch", type=int, default=64, help="images per detector call (default 64)")
    p.add_argument("--workers", type=int, default=3, help="DataLoader workers for image files (default 3)")
    p.add_argument("--autocast", choices=["bf16", "fp16"], help="mixed-precision extraction (changes FID slightly)")
    p.add_argument("--no-channels-last", action="store_true", help="run the detector in NCHW")
    p.add_argument("--preprocess", choices=["tf", "pytorch-fid"], default="tf",
                   help="Inception resize/scaling convention (default tf: TTUR/NVlabs values)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def init_distributed():
    """(rank, world_size, device or None) from torchrun's environment, initialising the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, f"cuda:{local}"
    dist.init_process_group("gloo")
    return dist.get_rank(), world, "cpu"


def opts_from_args(args):
    from ..metrics import ExtractOptions

    rank, world, dev = init_distributed()
    return ExtractOptions(device=args.device or dev, batch_size=args.batch, channels_last=not args.no_channels_last,
                          autocast=args.autocast, num_workers=args.workers, rank=rank, world_size=world,
                          progress=not args.no_progress and rank == 0, preprocess=args.preprocess)


def emit(records, out_path=None) -> None:
    """Print each record as a JSON line and append them to ``out_path`` (rewritten atomically)."""
    from ..utils.io import atomic_write_text

    lines = [json.dumps(r, sort_keys=True) for r in records]
    for line in lines:
        print(line)
    if out_path:
        old = open(out_path, encoding="utf-8").read() if os.path.exists(out_path) else ""
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(out_path, old + "\n".join(lines) + "\n")


def add_parser(sub) -> None:
    p = sub.add_parser("metrics", help="evaluate named metrics of a generator network")
    p.add_argument("--metrics", required=True, help="comma-separated: fid50k_full,kid50k_full,is50k,pr50k3_full,"
                   "fid50k,kid50k,pr50k3")
    p.add_argument("--network", required=True, metavar="PKL", help="NVlabs .pkl or fastgan .safetensors network")
    p.add_argument("--data", metavar="DIR|ZIP", help="real images (needed by all but is50k)")
    p.add_argument("--pr-detector", metavar="PATH", help="feature detector for precision/recall (NVlabs: VGG16)")
    p.add_argument("--num-gen", type=int, help="override the number of generated images (quick checks)")
    p.add_argument("--seed-offset", type=int, default=0, help="generated image i uses seed OFFSET+i")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached dataset statistics")
    p.add_argument("--out", metavar="JSONL", help="also append the results to this JSON-lines file")
    add_extract_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import fastgan

    from ..metrics.registry import calc_metrics, parse_metric_names

    names = parse_metric_names(args.metrics)
    opts = opts_from_args(args)
    G = fastgan.load_network(args.network, device=opts.resolved_device())
    results = calc_metrics(names, G, data=args.data, detector=args.detector, pr_detector=args.pr_detector,
                           opts=opts, num_gen=args.num_gen, seed_offset=args.seed_offset,
                           truncation_psi=args.trunc, cache=not args.no_cache)
    if opts.rank == 0:
        emit([{"metric": name, "network": str(args.network), "data": args.data, **res}
              for name, res in results.items()], args.out)
    return 0
