"""``fastgan mix``: a style-mixing grid (rows take the coarse styles, columns the chosen layer range)."""
from __future__ import annotations

from pathlib import Path

from ._netargs import add_network_args, backend_scope, load, require_generator


def add_parser(sub) -> None:
    p = sub.add_parser("mix", help="style-mixing grid: row seeds x column seeds")
    add_network_args(p)
    p.add_argument("--rows", required=True, help="row seeds, e.g. 85,100,75")
    p.add_argument("--cols", required=True, help="column seeds, e.g. 55,821,1789")
    p.add_argument("--styles", default="0-6", help="ws indices taken from the column seed (default 0-6)")
    p.add_argument("--outdir", required=True, help="output folder: grid.png (+ ROW-COL.png with --save-cells)")
    p.add_argument("--save-cells", action="store_true", help="also write every mixed image")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import torch

    from ..generation import (class_labels, parse_range, progress_bar, save_png, seeds_to_z, synthesize_ws,
                              to_uint8)

    rows, cols, styles = parse_range(args.rows), parse_range(args.cols), parse_range(args.styles)
    G = load(args)
    require_generator(G, "mix")
    bad = [s for s in styles if s >= G.num_ws]
    if bad:
        raise ValueError(f"--styles {bad} out of range: this network has {G.num_ws} ws")
    dev = torch.device(args.device)
    seeds = rows + cols
    with torch.no_grad():
        z = torch.from_numpy(seeds_to_z(seeds, G.z_dim)).to(dev)
        ws = G.mapping(z, class_labels(G, args.class_idx, len(seeds), dev), truncation_psi=args.trunc,
                       truncation_cutoff=args.trunc_cutoff)
    w_row, w_col = ws[:len(rows)], ws[len(rows):]
    res, ch = G.img_resolution, G.img_channels
    canvas = np.full([(len(rows) + 1) * res, (len(cols) + 1) * res, ch], 255, np.uint8)
    outdir = Path(args.outdir)
    with backend_scope(args), progress_bar(len(seeds) + len(rows) * len(cols), not args.no_progress) as bar:
        for i in range(0, len(seeds), args.batch):  # the unmixed images: top row and left column
            imgs = to_uint8(synthesize_ws(G, ws[i:i + args.batch], args.noise_mode, args.precision))
            for j, img in enumerate(imgs, start=i):
                r, q = (j + 1, 0) if j < len(rows) else (0, j - len(rows) + 1)
                canvas[r * res:(r + 1) * res, q * res:(q + 1) * res] = img
            bar.update(len(imgs))
        for r, row_seed in enumerate(rows):
            for q0 in range(0, len(cols), args.batch):
                mixed = w_row[r:r + 1].repeat(len(cols[q0:q0 + args.batch]), 1, 1).clone()
                mixed[:, styles] = w_col[q0:q0 + args.batch][:, styles]
                imgs = to_uint8(synthesize_ws(G, mixed, args.noise_mode, args.precision))
                for q, img in enumerate(imgs, start=q0):
                    canvas[(r + 1) * res:(r + 2) * res, (q + 1) * res:(q + 2) * res] = img
                    if args.save_cells:
                        save_png(outdir / f"{row_seed}-{cols[q]}.png", img)
                bar.update(len(imgs))
    save_png(outdir / "grid.png", canvas)
    print(f"wrote {outdir / 'grid.png'}")
    return 0
