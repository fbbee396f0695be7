"""Conditions: their "no condition" value (classifier-free guidance, condition dropout) and the
default reading of ``--cond NAME=SPEC``.

Conditions are a mapping ``{name: tensor with a leading batch dimension}``. Their null value is
what a network sees when the condition is withheld: the modality's ``null_condition(name, value)``
(declared on :class:`polydiff.protocol.Modality`; by default integer conditions such as class
labels become ``-1`` and floating ones ``0``). A network that accepts a condition must accept its
null value (the images U-Net maps a negative label to its null class).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["drop_conditions", "null_conditions"]


def _null(modality: Any, name: str, value: Tensor) -> Tensor:
    from polydiff.hooks import call

    return torch.as_tensor(
        call(modality, "null_condition", name, value), device=value.device, dtype=value.dtype
    )


def null_conditions(cond: Mapping[str, Any], modality: Any = None) -> dict[str, Any]:
    """Every tensor condition replaced by its null value (other entries are kept)."""
    return {
        k: _null(modality, k, v) if isinstance(v, Tensor) else v for k, v in cond.items()
    }


def drop_conditions(
    cond: Mapping[str, Any],
    p: float,
    modality: Any = None,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Replace all conditions of each batch item by their null value with probability ``p``.

    One draw per item decides for all its conditions together, so the network learns the fully
    unconditional model that classifier-free guidance contrasts with (Ho & Salimans 2022). Draws
    come from ``generator`` or torch's global RNG (which the trainer checkpoints, so a resumed run
    drops the same items).
    """
    tensors = {k: v for k, v in cond.items() if isinstance(v, Tensor) and v.dim() > 0}
    if p <= 0.0 or not tensors:
        return dict(cond)
    first = next(iter(tensors.values()))
    u = torch.rand(first.shape[0], generator=generator, device=generator.device if generator else "cpu")
    drop = (u < p).to(first.device)
    out = dict(cond)
    for k, v in tensors.items():
        d = drop.reshape(-1, *([1] * (v.dim() - 1)))
        out[k] = torch.where(d, _null(modality, k, v), v)
    return out
