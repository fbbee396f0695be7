"""The optimizer and the learning-rate schedule of a run, from its ``[train]`` settings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from polydiff.errors import UserError

LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adamw", "adam")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], tc: Mapping[str, Any], device: torch.device
) -> torch.optim.Optimizer:
    """AdamW or Adam with the ``[train]`` settings; fused kernels on CUDA."""
    name = str(tc.get("optimizer", "adamw")).lower()
    if name not in OPTIMIZERS:
        raise UserError(f"train.optimizer = {name!r}: expected {' or '.join(OPTIMIZERS)}")
    kwargs: dict[str, Any] = {
        "lr": float(tc["lr"]),
        "betas": (float(tc["beta1"]), float(tc["beta2"])),
        "eps": float(tc.get("eps", 1e-8)),
        "weight_decay": float(tc["weight_decay"]),
    }
    if device.type == "cuda":
        kwargs["fused"] = True
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, **kwargs)


@dataclass(frozen=True)
class LRSchedule:
    """``schedule(step)``: linear warm-up over ``warmup`` steps, then constant or a cosine from
    ``base`` down to ``floor`` at ``steps``."""

    base: float
    warmup: int
    kind: str = "constant"
    floor: float = 0.0
    steps: int = 1

    @classmethod
    def from_config(cls, tc: Mapping[str, Any]) -> LRSchedule:
        kind = str(tc.get("lr_schedule", "constant")).lower()
        if kind not in LR_SCHEDULES:
            raise UserError(f"train.lr_schedule = {kind!r}: expected {' or '.join(LR_SCHEDULES)}")
        base, floor = float(tc["lr"]), float(tc.get("lr_min", 0.0))
        return cls(base, int(tc["warmup_steps"]), kind, floor, int(tc["steps"]))

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return self.base * (step + 1) / self.warmup
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return self.floor + (self.base - self.floor) * cosine
        return self.base
