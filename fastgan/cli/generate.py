"""``fastgan generate``: images for a list of seeds, one PNG per seed plus an optional grid."""
from __future__ import annotations

from pathlib import Path

from ._netargs import add_network_args, backend_scope, load


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate images from a network for a list of seeds")
    add_network_args(p)
    p.add_argument("--seeds", required=True, help="seeds, e.g. 0-63 or 1,5,7-9")
    p.add_argument("--outdir", required=True, help="output folder (seedNNNN.png)")
    p.add_argument("--grid", default=None, metavar="COLSxROWS", help="also write grid.png of the first seeds")
    p.add_argument("--no-images", action="store_true", help="write only the grid")
    p.add_argument("--translate", default=None, metavar="X,Y", help="StyleGAN3: translate the image (e.g. 0.3,0)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG", help="StyleGAN3: rotate the image")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..generation import (iter_generate, parse_grid, parse_range, progress_bar, save_png,
                              set_input_transform)

    seeds = parse_range(args.seeds)
    grid = parse_grid(args.grid) if args.grid else None
    if args.no_images and grid is None:
        raise ValueError("--no-images needs --grid")
    G = load(args)
    if not hasattr(G, "z_dim"):
        raise ValueError(f"generate needs a generator, got {type(G).__name__}")
    if args.translate or args.rotate:
        try:
            tx, ty = (float(v) for v in (args.translate or "0,0").split(","))
        except ValueError:
            raise ValueError(f"--translate must look like X,Y, got {args.translate!r}") from None
        set_input_transform(G, (tx, ty), args.rotate)
    outdir = Path(args.outdir)
    canvas = None
    if grid is not None:
        cols, rows = grid
        canvas = np.zeros([rows * G.img_resolution, cols * G.img_resolution, G.img_channels], np.uint8)
    done = 0
    with backend_scope(args), progress_bar(len(seeds), not args.no_progress) as bar:
        for chunk, imgs in iter_generate(G, seeds, args.trunc, args.trunc_cutoff, args.noise_mode, args.class_idx,
                                         args.batch, args.device, args.precision):
            for seed, img in zip(chunk, imgs):
                if not args.no_images:
                    save_png(outdir / f"seed{seed:04d}.png", img)
                if canvas is not None and done < grid[0] * grid[1]:
                    r, q = divmod(done, grid[0])
                    h = G.img_resolution
                    canvas[r * h:(r + 1) * h, q * h:(q + 1) * h] = img
                done += 1
            bar.update(len(chunk))
    if canvas is not None:
        save_png(outdir / "grid.png", canvas)
    print(f"wrote {0 if args.no_images else len(seeds)} images{' and grid.png' if canvas is not None else ''} "
          f"to {outdir}")
    return 0


