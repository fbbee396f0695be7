"""Sampling: any sampler by name, on any state, with any denoiser callable.

``denoiser(x, sigma, **cond)`` estimates x_0 from the unscaled noisy state x = x_0 + sigma * eps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.sampling import euler as _euler  # noqa: F401  (registers samplers)
from polydiff.sampling.registry import SAMPLERS, SamplerSpec, get_sampler, register_sampler
from polydiff.sampling.schedules import SCHEDULES, get_sigmas
from polydiff.sde import SDE
from polydiff.state import Mask, State, apply_mask, pack, pack_mask, unpack

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "SampleResult",
    "SamplerSpec",
    "get_sampler",
    "get_sigmas",
    "register_sampler",
    "run_sampler",
    "sample",
]


@dataclass
class SampleResult:
    x: State
    nfe: int
    sigmas: Tensor


def run_sampler(
    denoiser: Callable[..., State],
    sde: SDE,
    *,
    noise: State,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    schedule: str | None = None,
    sigmas: Tensor | None = None,
    mask: Mask = None,
    cond: Mapping[str, Any] | None = None,
    noise_fn: Callable[[State, Mask], State] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable | None = None,
    **options: Any,
) -> SampleResult:
    """Run a named sampler from the SDE's prior; returns the samples and the number of denoiser calls.

    ``noise`` is standard-normal (already shaped by the modality); ``noise_fn(raw, mask)`` shapes
    the fresh noise stochastic samplers draw. Padded entries (``mask == 0``) stay zero.
    """
    spec = get_sampler(sampler)
    if sigmas is None:
        sigmas = get_sigmas(sde, steps, schedule or spec.default_schedule)
    cond = dict(cond or {})
    x_init = apply_mask(sde.prior_sample(noise), mask)
    flat, layout = pack(x_init)
    sigmas = sigmas.to(device=flat.device, dtype=flat.dtype)
    flat_mask = pack_mask(mask, x_init)
    nfe = 0

    def flat_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        out, _ = pack(denoiser(unpack(x, layout), sigma, **cond))
        return out if flat_mask is None else out * flat_mask

    def draw(like: Tensor) -> Tensor:
        raw = torch.randn(like.shape, device=like.device, dtype=like.dtype, generator=generator)
        if noise_fn is None and flat_mask is None:
            return raw
        state = unpack(raw, layout)
        if noise_fn is not None:
            state = noise_fn(state, mask)
        out, _ = pack(apply_mask(state, mask))
        return out

    x = spec.fn(flat_denoiser, flat, sigmas, noise=draw, callback=callback, **options)
    return SampleResult(unpack(x, layout), nfe, sigmas)


def sample(
    denoiser: Callable[..., State],
    sde: SDE,
    *,
    noise: State,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    **options: Any,
) -> State:
    """Draw samples: see :func:`run_sampler` for the options."""
    return run_sampler(denoiser, sde, noise=noise, sampler=sampler, steps=steps, **options).x
