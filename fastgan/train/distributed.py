"""Multi-process training: process-group setup, parameter broadcast, gradient all-reduce, launch.

fastgan synchronises gradients the StyleGAN3 way instead of wrapping the networks in
``DistributedDataParallel``: the loss calls ``G.mapping``/``G.synthesis`` and other sub-modules directly,
which DDP's hooks would not see. Each rank accumulates its rounds locally (so there is nothing to
``no_sync``), then one all-reduce of the flattened gradients per phase sums them and they are divided by the
world size. Parameters and buffers are broadcast from rank 0 once at start; afterwards only gradients are
synchronised, and the running averages inside G (``w_avg``, ``magnitude_ema``) and the loss's ``pl_mean``
stay per rank (training-spec §1.15).

The process group comes from the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``; ``init_method='env://'``): NCCL on CUDA, gloo on CPU, with an explicit
timeout so that a dead or hung rank ends the run with an error instead of hanging it. Without torchrun,
:func:`spawn` starts the ranks on this machine.
"""
from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "setup", "shutdown", "world_from_env", "broadcast_module", "all_reduce_gradients",
           "all_gather_object", "barrier", "spawn", "free_port", "modules_agree", "CollectiveError"]


class CollectiveError(RuntimeError):
    """A collective operation failed or timed out (another rank died, hung or diverged)."""


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: Optional[str]          # None: single process, no process group
    timeout_s: float

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None


def world_from_env() -> Optional[tuple]:
    """``(rank, world_size, local_rank)`` when started by torchrun (or :func:`spawn`), else None."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world, local


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available")
    torch.cuda.set_device(local_rank % torch.cuda.device_count())
    return torch.device("cuda", torch.cuda.current_device())


def setup(device: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """Join the process group described by the environment (or run alone when there is none)."""
    found = world_from_env()
    rank, world, local = found if found is not None else (0, 1, 0)
    dev = _pick_device(device, local)
    if world == 1:
        return DistEnv(0, 1, 0, dev, None, timeout_s)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local, dev, backend, timeout_s)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _collective(env: DistEnv, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RuntimeError as e:  # gloo/NCCL errors, timeouts included, are RuntimeError subclasses
        raise CollectiveError(f"rank {env.rank}/{env.world_size}: {what} failed (another rank died, hung or "
                              f"diverged; timeout {env.timeout_s:g} s): {e}") from e


def broadcast_module(env: DistEnv, module: torch.nn.Module, src: int = 0) -> None:
    """Make every parameter and buffer equal to rank ``src``'s."""
    if not env.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        _collective(env, "broadcast of the initial weights", lambda t=t: dist.broadcast(t.data, src=src))


def all_reduce_gradients(env: DistEnv, params: Sequence[torch.nn.Parameter]) -> Optional[torch.Tensor]:
    """Average the existing gradients of ``params`` over ranks with one flat all-reduce.

    Returns the flat gradient vector (after averaging), or None when no parameter has a gradient. Every
    rank must pass the same parameters with gradients present on the same ones.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    flat = torch.cat([g.reshape(-1) for g in grads])
    if env.enabled:
        _collective(env, "gradient all-reduce", lambda: dist.all_reduce(flat))
        flat.div_(env.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    return flat


def all_gather_object(env: DistEnv, obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not env.enabled:
        return [obj]
    out: List[Any] = [None] * env.world_size
    _collective(env, "all_gather_object", lambda: dist.all_gather_object(out, obj))
    return out


def barrier(env: DistEnv) -> None:
    if env.enabled:
        _collective(env, "barrier", dist.barrier)


def modules_agree(env: DistEnv, module: torch.nn.Module, ignore_suffixes=("_avg", "_ema")) -> List[str]:
    """Names of the parameters/buffers that differ from rank 0's (buffers ending in ``ignore_suffixes``
    are per-rank by design and skipped). Empty on a single process."""
    if not env.enabled:
        return []
    bad = []
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if name.endswith(tuple(ignore_suffixes)):
            continue
        ref = t.detach().clone()
        _collective(env, "snapshot consistency check", lambda ref=ref: dist.broadcast(ref, src=0))
        if not torch.equal(ref, t.detach()):
            bad.append(name)
    return bad


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, fn: Callable[..., Any], world: int, port: int, args: tuple) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(*args)


def spawn(fn: Callable[..., Any], nprocs: int, args: tuple = ()) -> None:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes that form one process group on this machine."""
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(fn, nprocs, free_port(), args), nprocs=nprocs, join=True)
