"""``fastgan interpolate``: a latent walk through keyframe seeds (lerp in W or slerp in Z) as GIF/MP4 or PNGs."""
from __future__ import annotations

from pathlib import Path

from ._netargs import add_network_args, backend_scope, load, require_generator


def add_parser(sub) -> None:
    p = sub.add_parser("interpolate", help="latent interpolation video (GIF/MP4 via imageio) or PNG frames")
    add_network_args(p)
    p.add_argument("--seeds", required=True, help="keyframe seeds, e.g. 0,5,9")
    p.add_argument("--frames", type=int, default=30, help="frames per transition (default 30)")
    p.add_argument("--space", default="w", choices=["w", "z"], help="lerp in W (default) or slerp in Z")
    p.add_argument("--loop", action="store_true", help="return to the first seed at the end")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--out", required=True,
                   help="OUT.gif / OUT.mp4 (needs imageio; MP4 also imageio-ffmpeg) or a folder for PNG frames")
    p.set_defaults(func=run)


def _keyframe_steps(n_keys: int, frames: int, loop: bool):
    """(a, b, t) per frame: interpolate keyframe a -> b at fraction t."""
    pairs = [(i, i + 1) for i in range(n_keys - 1)] + ([(n_keys - 1, 0)] if loop else [])
    for a, b in pairs:
        for f in range(frames):
            yield a, b, f / frames
    if not loop:
        yield n_keys - 1, n_keys - 1, 0.0


def _writer(out: Path, fps: int):
    if out.suffix.lower() in (".gif", ".mp4"):
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise ValueError(f"writing {out.suffix} needs imageio (pip install imageio); or pass a folder for "
                             f"PNG frames") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part{out.suffix}")
        kw = {"duration": 1000 / fps, "loop": 0} if out.suffix.lower() == ".gif" else {"fps": fps}
        return imageio.get_writer(str(tmp), **kw), tmp
    return None, None


def run(args) -> int:
    import os

    import torch

    from ..generation import (class_labels, parse_range, progress_bar, save_png, seeds_to_z, slerp,
                              synthesize_ws, to_uint8)

    seeds = parse_range(args.seeds)
    if len(seeds) < 2:
        raise ValueError("--seeds needs at least two keyframes")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    G = load(args)
    require_generator(G, "interpolate")
    dev = torch.device(args.device)
    z = torch.from_numpy(seeds_to_z(seeds, G.z_dim)).to(dev)
    c = class_labels(G, args.class_idx, len(seeds), dev)
    with torch.no_grad():
        w_keys = G.mapping(z, c, truncation_psi=args.trunc, truncation_cutoff=args.trunc_cutoff)
    steps = list(_keyframe_steps(len(seeds), args.frames, args.loop))
    out = Path(args.out)
    writer, tmp = _writer(out, args.fps)
    try:
        with backend_scope(args), progress_bar(len(steps), not args.no_progress, "frames") as bar:
            for i in range(0, len(steps), args.batch):
                chunk = steps[i:i + args.batch]
                a = torch.tensor([s[0] for s in chunk], device=dev)
                b = torch.tensor([s[1] for s in chunk], device=dev)
                t = torch.tensor([s[2] for s in chunk], device=dev, dtype=torch.float32)
                with torch.no_grad():
                    if args.space == "z":
                        ws = G.mapping(slerp(z[a], z[b], t), c[a], truncation_psi=args.trunc,
                                       truncation_cutoff=args.trunc_cutoff)
                    else:
                        ws = torch.lerp(w_keys[a], w_keys[b], t[:, None, None])
                imgs = to_uint8(synthesize_ws(G, ws, args.noise_mode, args.precision))
                for j, img in enumerate(imgs, start=i):
                    if writer is not None:
                        writer.append_data(img if img.shape[2] != 1 else img[:, :, 0])
                    else:
                        save_png(out / f"frame{j:05d}.png", img)
                bar.update(len(imgs))
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    print(f"wrote {len(steps)} frames to {out}")
    return 0
