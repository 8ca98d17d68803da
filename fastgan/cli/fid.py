"""``fastgan fid PATH_A PATH_B`` and ``fastgan fid-stats PATH --out stats.npz``.

Paths are image folders, .zip files of images, or .npz statistics (``mu``/``sigma``, pytorch-fid's format).
"""
from __future__ import annotations

from .metrics import add_extract_args, emit, opts_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("fid", help="FID between two image folders/zips or .npz statistics")
    p.add_argument("paths", nargs=2, metavar="PATH", help="image folder, .zip or .npz statistics")
    p.add_argument("--max-items", type=int, help="use at most this many images of each set")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached dataset statistics")
    p.add_argument("--out", metavar="JSONL", help="also append the result to this JSON-lines file")
    add_extract_args(p)
    p.set_defaults(func=run_fid)

    s = sub.add_parser("fid-stats", help="write the Inception statistics of an image folder/zip as .npz")
    s.add_argument("path", metavar="PATH", help="image folder or .zip")
    s.add_argument("--out", required=True, metavar="NPZ", help="output .npz (mu, sigma, n)")
    s.add_argument("--max-items", type=int, help="use at most this many images")
    add_extract_args(s)
    s.set_defaults(func=run_stats)


def run_fid(args) -> int:
    import time

    from ..metrics import fid

    opts = opts_from_args(args)
    t0 = time.perf_counter()
    value = fid(args.paths[0], args.paths[1], detector=args.detector, opts=opts, max_items=args.max_items,
                cache=not args.no_cache)
    if opts.rank == 0:
        emit([{"metric": "fid", "value": value, "a": args.paths[0], "b": args.paths[1],
               "seconds": time.perf_counter() - t0}], args.out)
    return 0


def run_stats(args) -> int:
    from ..metrics import fid_stats

    opts = opts_from_args(args)
    fid_stats(args.path, args.out, detector=args.detector, opts=opts, max_items=args.max_items)
    return 0
