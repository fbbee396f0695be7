"""Shape completion of held-out clouds: the model's imputation against a mirror baseline.

A cloud's known part is a half-space (``axis > 0`` in its normalised frame); the model regenerates
the other points through the core's imputation (replacement, with RePaint rounds if asked), and
the baseline mirrors the known points across the cutting plane, the natural guess for the
mirror-symmetric objects most shape collections hold. Both are scored by Chamfer distance to the
whole true cloud.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["complete", "half_space", "mirror_baseline"]


def half_space(clouds: Tensor, axis: int = 0, threshold: float = 0.0) -> Tensor:
    """Known mask ``(B, N)``: 1 where ``clouds[..., axis] > threshold``."""
    return (clouds[..., axis] > threshold).float()


def mirror_baseline(clouds: Tensor, known: Tensor, axis: int = 0, seed: int = 0) -> Tensor:
    """The known points, and the unknown ones replaced by mirror images of known points (drawn
    without replacement while they last) across the plane ``axis = 0``."""
    g = torch.Generator().manual_seed(seed)
    out = clouds.clone()
    for b in range(clouds.shape[0]):
        kn = known[b] > 0
        src = clouds[b][kn]
        missing = int((~kn).sum())
        if missing == 0 or len(src) == 0:
            continue
        order = torch.cat([torch.randperm(len(src), generator=g) for _ in range(-(-missing // len(src)))])
        mirrored = src[order[:missing]].clone()
        mirrored[:, axis] = -mirrored[:, axis]
        out[b][~kn] = mirrored
    return out


def complete(modality: Any, config: Mapping[str, Any], denoiser: Any, clouds: Tensor, known: Tensor, *,
             sampler: str = "heun", steps: int = 24, resample: int = 1, guidance: float = 0.0,
             seed: int = 0, dataset: Any = None) -> Tensor:
    """Completions of ``clouds`` ``(B, N, 3)`` keeping the points where ``known`` is 1, with
    ``resample`` RePaint rounds and reconstruction guidance of weight ``guidance`` (0: none).
    A partial cloud's class is unknown: a class-conditional model completes it without a label."""
    from polydiff.generate import generate

    x, _, _ = generate(modality, config, denoiser, n=clouds.shape[0], sampler=sampler, steps=steps,
                       seed=seed, dataset=dataset, known=(clouds, known), imputation_resample=resample,
                       imputation_guidance=guidance, cond={"label": None})
    return x
