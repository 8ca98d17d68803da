"""Training curves of a run directory (``stats.jsonl``, ``metric-*.jsonl``) rendered to one PNG.

:func:`run_panels` turns the files into panels (losses, regularisation, r_t, ADA p, sec/kimg, one panel per
metric file) and :func:`render_png` draws them with matplotlib when it is importable, otherwise with a small
built-in PIL line-plot renderer. ``fastgan plot RUN_DIR`` and the training demo use :func:`plot_run`.
"""
from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..utils.io import atomic_write_bytes

__all__ = ["Series", "Panel", "read_jsonl", "run_panels", "render_png", "plot_run", "nice_ticks"]

PathLike = Union[str, Path]

# (panel title, statistics keys drawn as lines of that panel); a panel with no data is left out.
STAT_PANELS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("losses", ("Loss/G/loss", "Loss/D/loss")),
    ("regularisation", ("Loss/G/reg", "Loss/D/reg", "Loss/r1_penalty", "Loss/pl_penalty")),
    ("r_t = E[sign(D(real))]", ("Loss/signs/real", "Progress/rt")),
    ("augmentation p", ("Progress/augment",)),
    ("sec/kimg", ("Timing/sec_per_kimg",)),
)


@dataclass
class Series:
    """One line: points ``(x[i], y[i])``; non-finite y values break the line."""
    label: str
    x: List[float]
    y: List[float]


@dataclass
class Panel:
    title: str
    series: List[Series] = field(default_factory=list)
    xlabel: str = "kimg"


def read_jsonl(path: PathLike) -> List[Dict]:
    """The JSON objects of a ``.jsonl`` file, one per line; a truncated last line (a run still writing) is
    skipped, any other malformed line is a ValueError naming the file and line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {i + 1} is not a JSON object")
        out.append(rec)
    return out


def _mean(rec: Dict, key: str) -> float:
    v = rec.get(key)
    if isinstance(v, dict) and v.get("num", 1):
        try:
            return float(v.get("mean"))
        except (TypeError, ValueError):
            return math.nan
    return math.nan


def _snapshot_kimg(rec: Dict) -> float:
    """kimg of a metric line: its ``kimg`` key, else the number in ``network-snapshot-<KIMG>``."""
    if isinstance(rec.get("kimg"), (int, float)):
        return float(rec["kimg"])
    m = re.search(r"snapshot-(\d+)", str(rec.get("snapshot_pkl", "")))
    return float(m.group(1)) if m else math.nan


def run_panels(run_dir: PathLike) -> List[Panel]:
    """Panels of ``run_dir``: the statistics of :data:`STAT_PANELS` against ``Progress/kimg`` (the ADA target
    from ``training_options.json`` as a reference line of the r_t panel), then one panel per result key of
    every ``metric-<name>.jsonl`` against the snapshot's kimg."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run_dir: no such directory {str(run_dir)!r}")
    stats_path = run_dir / "stats.jsonl"
    metric_paths = sorted(run_dir.glob("metric-*.jsonl"))
    if not stats_path.is_file() and not metric_paths:
        raise ValueError(f"run_dir: {run_dir} holds neither stats.jsonl nor metric-*.jsonl")
    panels: List[Panel] = []
    rows = read_jsonl(stats_path) if stats_path.is_file() else []
    xs = [_mean(r, "Progress/kimg") for r in rows]
    target = _ada_target(run_dir)
    for title, keys in STAT_PANELS:
        panel = Panel(title)
        for key in keys:
            ys = [_mean(r, key) for r in rows]
            if any(math.isfinite(y) for y in ys):
                panel.series.append(Series(key, xs, ys))
        if panel.series and target is not None and "Loss/signs/real" in keys:
            finite = [x for x in xs if math.isfinite(x)]
            panel.series.append(Series(f"target {target:g}", [min(finite), max(finite)], [target, target]))
        if panel.series:
            panels.append(panel)
    for path in metric_paths:
        recs = read_jsonl(path)
        keys: List[str] = []
        for rec in recs:
            keys += [k for k in rec.get("results", {}) if k not in keys]
        mx = [_snapshot_kimg(r) for r in recs]
        for key in keys:                            # one panel per result: their scales differ
            ys = [float(r.get("results", {}).get(key, math.nan)) for r in recs]
            panels.append(Panel(key, [Series(key, mx, ys)]))
    return panels


def _ada_target(run_dir: Path) -> Optional[float]:
    opts = run_dir / "training_options.json"
    if not opts.is_file():
        return None
    try:
        value = json.loads(opts.read_text()).get("ada_target")
    except (json.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


# ----------------------------------------------------------------------------------------------- rendering
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> List[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"nice_ticks: bounds must be finite, got {lo}, {hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:                                    # a constant: centre it in a small range
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _finite_points(s: Series) -> List[Tuple[float, float]]:
    return [(x, y) for x, y in zip(s.x, s.y) if math.isfinite(x) and math.isfinite(y)]


def _bounds(panel: Panel) -> Tuple[float, float, float, float]:
    pts = [p for s in panel.series for p in _finite_points(s)]
    if not pts:
        return 0.0, 1.0, 0.0, 1.0
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), max(xs), min(ys), max(ys)


def _label(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _draw_panel_pil(draw, font, box: Tuple[int, int, int, int], panel: Panel) -> None:
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 58, x1 - 12, y0 + 24, y1 - 34
    draw.text((x0 + (x1 - x0) // 2, y0 + 6), panel.title, fill=(0, 0, 0), font=font, anchor="mt")
    bx0, bx1, by0, by1 = _bounds(panel)
    xt, yt = nice_ticks(bx0, bx1), nice_ticks(by0, by1)
    xlo, xhi, ylo, yhi = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float, y: float) -> Tuple[float, float]:
        return (left + (x - xlo) / (xhi - xlo) * (right - left), bottom - (y - ylo) / (yhi - ylo) * (bottom - top))
    for t in xt:
        u = px(t, ylo)[0]
        draw.line([(u, top), (u, bottom)], fill=(225, 225, 225))
        draw.text((u, bottom + 4), _label(t), fill=(60, 60, 60), font=font, anchor="mt")
    for t in yt:
        v = px(xlo, t)[1]
        draw.line([(left, v), (right, v)], fill=(225, 225, 225))
        draw.text((left - 4, v), _label(t), fill=(60, 60, 60), font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text(((left + right) // 2, y1 - 4), panel.xlabel, fill=(0, 0, 0), font=font, anchor="mb")
    for k, s in enumerate(panel.series):
        color = PALETTE[k % len(PALETTE)]
        run: List[Tuple[float, float]] = []
        for x, y in list(zip(s.x, s.y)) + [(math.nan, math.nan)]:
            if math.isfinite(x) and math.isfinite(y):
                run.append(px(x, y))
                continue
            if len(run) == 1:
                u, v = run[0]
                draw.ellipse([u - 2, v - 2, u + 2, v + 2], fill=color)
            elif run:
                draw.line(run, fill=color, width=2)
            run = []
        draw.line([(left + 6, top + 8 + 12 * k), (left + 22, top + 8 + 12 * k)], fill=color, width=2)
        draw.text((left + 26, top + 8 + 12 * k), s.label, fill=(0, 0, 0), font=font, anchor="lm")


def _render_pil(panels: Sequence[Panel], title: str, cols: int, size: Tuple[int, int]) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    rows = math.ceil(len(panels) / cols)
    img = Image.new("RGB", (cols * w, rows * h + 24), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((cols * w // 2, 6), title, fill=(0, 0, 0), font=font, anchor="mt")
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        _draw_panel_pil(draw, font, (c * w, 24 + r * h, (c + 1) * w, 24 + (r + 1) * h), panel)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _render_matplotlib(panels: Sequence[Panel], title: str, cols: int, size: Tuple[int, int]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = math.ceil(len(panels) / cols)
    dpi = 100
    fig = Figure(figsize=(cols * size[0] / dpi, rows * size[1] / dpi + 0.3), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for s in panel.series:
            ax.plot(s.x, s.y, label=s.label, marker="o" if len(_finite_points(s)) == 1 else None)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_png(panels: Sequence[Panel], path: PathLike, title: str = "", cols: int = 3,
               size: Tuple[int, int] = (480, 300), renderer: str = "auto") -> Path:
    """Draw ``panels`` on a grid of ``cols`` columns (each ``size`` pixels) and write the PNG atomically.

    ``renderer``: 'matplotlib', 'pil', or 'auto' (matplotlib when importable, else PIL).
    """
    if not panels:
        raise ValueError("render_png: nothing to plot (no panels)")
    if renderer not in ("auto", "matplotlib", "pil"):
        raise ValueError(f"renderer must be 'auto', 'matplotlib' or 'pil', got {renderer!r}")
    if renderer == "auto":
        try:
            import matplotlib  # noqa: F401
            renderer = "matplotlib"
        except ImportError:
            renderer = "pil"
    cols = max(1, min(cols, len(panels)))
    draw = _render_matplotlib if renderer == "matplotlib" else _render_pil
    atomic_write_bytes(path, draw(panels, title, cols, size))
    return Path(path)


def plot_run(run_dir: PathLike, out: Optional[PathLike] = None, renderer: str = "auto") -> Path:
    """Render the curves of ``run_dir`` to ``out`` (default ``<run_dir>/curves.png``); returns the path."""
    run_dir = Path(run_dir)
    return render_png(run_panels(run_dir), out if out is not None else run_dir / "curves.png",
                      title=run_dir.name, renderer=renderer)
