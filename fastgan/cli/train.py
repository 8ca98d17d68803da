"""``fastgan train``: train a StyleGAN2/3 (NVlabs option names and defaults; training-spec §4.4).

Options come from three layers, later ones winning: the ``TrainConfig`` defaults, a ``--config run.json``
file (the same options, keys spelled ``batch_gpu`` or ``batch-gpu``), then the command line. Boolean options
accept a bare flag (``--mirror``) or a value (``--mirror=1``, true/false, yes/no, on/off). Everything is
validated before training starts; a bad option ends the command with exit code 2 and a message naming it.
Under ``torchrun --nproc_per_node N -m fastgan train ...`` every process runs this command, ``--gpus``
defaults to torchrun's ``WORLD_SIZE`` and the trainer joins the ``env://`` process group.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["add_parser", "run", "build_config", "OPTIONS"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` -> True, ``0/false/no/off`` -> False (case-insensitive)."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean ({'/'.join(_TRUE)} or {'/'.join(_FALSE)}), got {text!r}")


def _gamma(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({e.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _choices(name: str) -> Tuple[str, ...]:
    from ..train import config

    return {"cfg": config.cfg_names(), "aug": config.AUG_MODES, "loss": config.LOSS_NAMES,
            "precision": config.PRECISIONS, "compat": config.COMPAT_MODES, "device": ("auto", "cpu", "cuda")}[name]


# (TrainConfig field, value parser or "bool"/"choice", metavar, help). Every TrainConfig field has a row.
OPTIONS: List[Tuple[str, Any, Optional[str], str]] = [
    ("outdir", str, "DIR", "parent of the run directory <ID:05d>-<desc> (default training-runs)"),
    ("data", str, "PATH", "dataset: image folder or .zip (NVlabs layout, dataset.json labels)"),
    ("cfg", "choice", None,
     "model family and base configuration: a StyleGAN table or dcgan (default auto: from resolution and GPU count)"),
    ("gpus", int, "N", "number of processes/GPUs (default 1)"),
    ("batch", int, "N", "total batch size (default from --cfg)"),
    ("batch_gpu", int, "N", "images per process and forward pass; accumulates up to --batch"),
    ("gamma", _gamma, "G|auto", "R1 regularisation weight (default auto: from --cfg)"),
    ("mirror", "bool", None, "double the dataset with x-flips"),
    ("cond", "bool", None, "class-conditional training (needs dataset.json labels)"),
    ("aug", "choice", None, "augmentation: ada (adaptive p), fixed (--p), noaug, diffaug (default ada)"),
    ("p", float, "P", "augmentation probability for --aug=fixed (default 0.2)"),
    ("target", float, "T", "ADA target for r_t (default 0.6)"),
    ("augpipe", str, "NAME", "augmentation preset: blit, geom, color, filter, noise, cutout, bg, bgc (default), "
                             "bgcf, bgcfn, bgcfnc"),
    ("kimg", float, "KIMG", "training length in thousands of real images (default from --cfg)"),
    ("tick", float, "KIMG", "progress interval in kimg (default 4)"),
    ("snap", int, "TICKS", "ticks between image/network snapshots and metrics (default 50)"),
    ("metrics", str, "LIST", "metrics at each snapshot, comma-separated, or none (default fid50k_full)"),
    ("resume", str, "PATH", "run directory or checkpoint to continue, latest (newest run under --outdir), or a "
                            "network snapshot / NVlabs pickle to start from (transfer learning)"),
    ("freezed", int, "N", "freeze the first N discriminator layers (default 0)"),
    ("precision", "choice", None, "fp16 (NVlabs mixed precision, CUDA), fp32, bf16 (default fp16)"),
    ("seed", int, "N", "random seed (default 0)"),
    ("workers", int, "N", "data-loader worker processes (default 3)"),
    ("loss", "choice", None, "GAN objective (default nonsaturating)"),
    ("r2_gamma", float, "G", "R2 penalty weight on fakes (default 0)"),
    ("label_smoothing", float, "S", "one-sided label smoothing of the real target (default 0)"),
    ("cbase", int, "N", "channel_base of G and D (default from --cfg)"),
    ("cmax", int, "N", "channel_max of G and D (default from --cfg)"),
    ("map_depth", int, "N", "mapping-network layers of G (default from --cfg)"),
    ("glr", float, "LR", "G learning rate (default from --cfg)"),
    ("dlr", float, "LR", "D learning rate (default from --cfg)"),
    ("mbstd_group", int, "N", "minibatch-std group size (default from --cfg)"),
    ("keep_checkpoints", int, "K", "training-state checkpoints kept (default 3)"),
    ("max_bad_steps", int, "N", "consecutive non-finite steps before rolling back (default 8)"),
    ("export_nvlabs_state", "bool", None, "also write plain state dicts with NVlabs names at each snapshot"),
    ("dry_run", "flag", None, "print the resolved options and exit"),
    ("desc", str, "TEXT", "suffix of the run-directory name"),
    ("run_dir", str, "DIR", "use this run directory (continued when it holds checkpoints)"),
    ("subset", int, "N", "train on a random N-image subset"),
    ("checkpoint_every_steps", int, "N", "training-state checkpoint every N steps (default: every tick)"),
    ("max_rollbacks", int, "N", "rollbacks to the last good checkpoint before giving up (default 3)"),
    ("pl_weight", float, "W", "path-length regularisation weight (default from --cfg)"),
    ("style_mixing", float, "P", "style-mixing probability (default from --cfg)"),
    ("diffaug_policy", str, "LIST", "DiffAugment policy for --aug=diffaug (default color,translation,cutout)"),
    ("g_kwargs", _json_object, "JSON", "extra generator kwargs, merged last (JSON object)"),
    ("d_kwargs", _json_object, "JSON", "extra discriminator kwargs, merged last (JSON object)"),
    ("grid", str, "GWxGH", "image-grid size of reals.png/fakes*.png, e.g. 8x4"),
    ("metrics_detector", str, "PATH", "Inception weights for the metrics (nothing is downloaded)"),
    ("metrics_num_gen", int, "N", "generated images per metric (default: the metric's own)"),
    ("dist_timeout", float, "SEC", "seconds before a hung rank ends the run (default 600)"),
    ("device", "choice", None, "auto, cpu or cuda (default auto)"),
    ("compat", "choice", None, "fastgan (default) or nvlabs: reproduce the NVlabs quirks of training-spec §7"),
    ("allow_tf32", "bool", None, "allow TF32 matmul/convolutions on CUDA"),
    ("nobench", "bool", None, "disable the cuDNN benchmark"),
    ("host_cache", "bool", None, "CPU: reuse freed activation buffers across steps (a host-cache arena for the "
                                 "training thread; fewer page faults, more resident memory)"),
]


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a StyleGAN2/StyleGAN3 (NVlabs options)",
                       argument_default=argparse.SUPPRESS,
                       description="Train a GAN. Options not given come from --config, then from --cfg's table. "
                                   "Example: fastgan train --outdir runs --data data.zip --cfg auto --gpus 1")
    p.add_argument("--config", metavar="JSON", default=None, help="read options from a JSON file "
                   "(keys as the option names); command-line options override it")
    for field, kind, metavar, help_text in OPTIONS:
        names = [_flag(field)] + (["-n"] if field == "dry_run" else [])
        if kind == "flag":
            p.add_argument(*names, dest=field, action="store_const", const=True, help=help_text)
        elif kind == "bool":
            p.add_argument(*names, dest=field, nargs="?", const=True, type=parse_bool, metavar="BOOL", help=help_text)
        elif kind == "choice":
            p.add_argument(*names, dest=field, choices=_choices(field), help=help_text)
        else:
            p.add_argument(*names, dest=field, type=kind, metavar=metavar, help=help_text)
    p.add_argument("--fp32", dest="fp32", nargs="?", const=True, type=parse_bool, metavar="BOOL",
                   help="NVlabs spelling of --precision fp32")
    p.set_defaults(func=run)


def _read_config_file(path: str) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config: no such file {path!r}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--config: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path} must hold a JSON object of options")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(args: argparse.Namespace):
    """The ``TrainConfig`` of parsed arguments: defaults, then ``--config`` file, then explicit options.

    Under torchrun (``WORLD_SIZE`` set) ``gpus`` defaults to the number of processes.
    """
    from ..train.config import TrainConfig

    given = {k: v for k, v in vars(args).items() if k not in ("command", "func", "config")}
    fp32 = given.pop("fp32", None)
    if fp32:
        if given.get("precision", "fp32") != "fp32":
            raise ValueError(f"--fp32 contradicts --precision {given['precision']}")
        given["precision"] = "fp32"
    options = _read_config_file(args.config) if getattr(args, "config", None) else {}
    options.update(given)
    if "gpus" not in options and os.environ.get("WORLD_SIZE", "").isdigit():
        options["gpus"] = int(os.environ["WORLD_SIZE"])       # under torchrun: one rank per process
    try:
        return TrainConfig.from_dict(options)
    except ValueError as e:
        raise ValueError(f"--config: {e}") from None


def name_option(message: str) -> str:
    """Prefix a validation message with the command-line flag of the option it is about, if it names one."""
    fields = {f for f, *_ in OPTIONS}
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message)[:2]
    for word in words[: 2 if words[:1] == ["unknown"] else 1]:
        if word in fields:
            if message.startswith(f"{word}:"):
                return _flag(word) + message[len(word):]
            return f"{_flag(word)}: {message}"
    return message


def _on_cpu(config) -> bool:
    import torch

    return config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())


def run(args: argparse.Namespace) -> int:
    from ..train import Trainer

    config = build_config(args)
    if _on_cpu(config) and not (config.host_cache or config.dry_run):
        print("Tip: on CPU, --host-cache reuses freed activation buffers instead of page-faulting fresh ones "
              "every step (docs/training.md)")
    try:
        run_dir = Trainer(config).fit()
    except (ValueError, TypeError) as e:
        raise type(e)(name_option(str(e))) from None
    if run_dir is not None:
        print(f"Run directory: {run_dir}")
    return 0
