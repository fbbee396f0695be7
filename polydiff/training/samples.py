"""Samples from a training run's EMA, written by the modality's writer: periodic snapshots and the
samples at the end of the run."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff import hooks
from polydiff.generate import generate
from polydiff.state import state_to


def write_samples_from(
    modality: Any,
    config: dict[str, Any],
    model: nn.Module,
    out: Path,
    *,
    n: int,
    device: torch.device,
    dataset: Any = None,
    keep_rng: bool = False,
    run_dir: Path | None = None,
) -> list[Path]:
    """``n`` samples with the ``[sample]`` settings into ``out``; ``keep_rng`` leaves the global RNG
    as it was, so that a snapshot in the middle of training does not change the run. ``run_dir``
    holds the grid of ``schedule = "tuned"`` (a distilled student's)."""
    from polydiff.tuning import TUNED, schedule_options

    sc = config["sample"]
    schedule = str(sc["schedule"])
    grid: dict[str, Any] = {"schedule": schedule}
    if schedule == TUNED:
        grid = schedule_options(run_dir if run_dir is not None else out.parent, schedule,
                                str(sc["sampler"]), int(sc["steps"]))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices) if keep_rng else contextlib.nullcontext():
        x, layout, _ = generate(
            modality,
            config,
            model,
            n=n,
            sampler=str(sc["sampler"]),
            steps=int(sc["steps"]),
            seed=int(sc["seed"]),
            **grid,
            device=device,
            dataset=dataset,
        )
    return hooks.call(
        modality, "write_samples", state_to(x, "cpu"), out, mask=state_to(layout.mask, "cpu"),
        config=config,
        cond={k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in layout.cond.items()},
    )
