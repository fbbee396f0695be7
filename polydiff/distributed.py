"""Data-parallel training on torch.distributed: process-group setup from torchrun's environment.

``torchrun --nproc-per-node N -m polydiff train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`setup` reads them
and joins the process group (NCCL for CUDA devices, gloo on CPU). Without those variables (a plain
``polydiff train``) nothing happens and every helper here is a cheap no-op, so the engine calls them
unconditionally.

Every helper that talks to the other processes is a *collective*: all ranks must call it, in the same
order, or the run hangs. The engine only calls them at points every rank reaches together (the end
of a step, a checkpoint, the end of the run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

#: how long a collective may wait for a slow rank (a rank-0 checkpoint or snapshot) before failing
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def env_info() -> DistInfo:
    """What torchrun (or any ``env://`` launcher) asked for, whether or not the group exists yet."""
    return DistInfo(_int_env("RANK", 0), _int_env("WORLD_SIZE", 1), _int_env("LOCAL_RANK", 0))


def info() -> DistInfo:
    """The joined process group, or rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _int_env("LOCAL_RANK", 0))
    return DistInfo()


def backend_for(device_type: str, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "nccl" if device_type == "cuda" else "gloo"


def setup(device: str = "auto", backend: str = "auto") -> DistInfo:
    """Join the process group described by the environment (idempotent); returns this rank's info.

    ``device`` is the run's ``train.device`` setting; on CUDA each process takes the GPU of its
    ``LOCAL_RANK``.
    """
    wanted = env_info()
    if not wanted.enabled:
        return info()
    if dist.is_initialized():
        return info()
    if not dist.is_available():  # pragma: no cover - builds without distributed support
        raise RuntimeError("this torch build has no torch.distributed; run a single process")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(wanted.local_rank)
    dist.init_process_group(backend_for("cuda" if use_cuda else "cpu", backend), timeout=TIMEOUT)
    return info()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """Each rank's own GPU (``cuda:LOCAL_RANK``) when distributed on CUDA; ``device`` otherwise."""
    me = info()
    if me.enabled and device.type == "cuda" and device.index is None:
        return torch.device("cuda", me.local_rank)
    return device


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few floats over all ranks (one collective); identity when not distributed."""
    if not info().enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order; ``[obj]`` when not distributed."""
    if not info().enabled:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank; ``obj`` when not distributed."""
    if not info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if info().enabled:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
