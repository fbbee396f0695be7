"""Exponential moving averages of the weights: their decay rates, warm-up, update and names."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from polydiff.errors import UserError


def ema_decays(tc: Mapping[str, Any]) -> list[float]:
    """``train.ema_decays`` when set (the first one samples), else ``[train.ema_decay]``."""
    decays = tc.get("ema_decays") or [tc["ema_decay"]]
    if isinstance(decays, (int, float)):
        decays = [decays]
    out = [float(d) for d in decays]
    for d in out:
        if not 0.0 <= d < 1.0:
            raise UserError(f"train.ema_decays: {d} is not in [0, 1)")
    return out


def warmup_decay(step: int, decay: float) -> float:
    """The decay used after ``step`` updates: lower at first, so that early EMA weights are not
    dominated by the random initialisation."""
    return min(decay, (1 + step) / (10 + step))


def ema_copies(model: nn.Module, n: int) -> list[nn.Module]:
    """``n`` frozen copies of ``model`` to average into."""
    return [copy.deepcopy(model).requires_grad_(False).eval() for _ in range(n)]


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for floating parameters; buffers copied."""
    with torch.no_grad():
        e_params = [p for p in ema.parameters() if p.is_floating_point()]
        m_params = [p.detach() for p in model.parameters() if p.is_floating_point()]
        if e_params:
            torch._foreach_lerp_(e_params, m_params, 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)


def group_name(i: int) -> str:
    """The checkpoint prefix of the ``i``-th EMA: ``ema`` (the one that samples), ``ema1`` ..."""
    return "ema" if i == 0 else f"ema{i}"


def load_emas(
    emas: Sequence[nn.Module],
    decays: Sequence[float],
    groups: Mapping[str, Mapping[str, torch.Tensor]],
    saved_decays: Sequence[float],
) -> None:
    """Each EMA from the saved one of the same decay; a decay added on resume starts from the
    current weights (``groups["model"]``)."""
    saved = [float(d) for d in saved_decays]
    for decay, ema in zip(decays, emas, strict=True):
        name = group_name(saved.index(decay)) if decay in saved else "model"
        ema.load_state_dict(groups[name])
