"""The random streams of a run: every rank's state goes into each checkpoint and comes back on
resume, so that a resumed run draws the very noise an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def rank_seed(seed: int, rank: int) -> int:
    """A distinct, reproducible seed per rank of a distributed run."""
    return (seed * 1_000_003 + 7919 * rank) % (2**63 - 1)


def rng_state() -> dict[str, Any]:
    """This process's global CPU and CUDA generator states."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(rng: Mapping[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])


def rng_entries(rng_ranks: list[dict[str, Any]], world_size: int) -> dict[str, Any]:
    """The training-state entries for every rank's generator states (rank 0's also flat, for a
    resume at another world size)."""
    return {
        "rng_cpu": rng_ranks[0]["cpu"],
        "rng_cuda": rng_ranks[0]["cuda"],
        "rng_ranks": rng_ranks,
        "world_size": world_size,
    }


def restore_rng(state: Mapping[str, Any], *, rank: int, world_size: int, seed: int) -> None:
    """Continue this rank's stream from a training state; at another world size rank 0 continues
    its own and the others reseed deterministically (not the same noise as before, necessarily)."""
    ranks = state.get("rng_ranks") or []
    if int(state.get("world_size", 1)) == world_size and len(ranks) > rank:
        set_rng_state(ranks[rank])
    elif rank == 0:
        set_rng_state({"cpu": state["rng_cpu"], "cuda": state["rng_cuda"]})
    else:
        torch.manual_seed(rank_seed(seed, rank) + int(state["step"]))
