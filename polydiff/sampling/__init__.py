"""Sampling: any sampler by name, on any state, with any denoiser callable.

``denoiser(x, sigma, **cond)`` estimates x_0 from the unscaled noisy state x = x_0 + sigma * eps.
Samplers (one module per family, registered by name in :data:`SAMPLERS`) work on the packed
``(B, D)`` state and a decreasing grid of noise levels; :func:`run_sampler` packs the state, draws
the prior, counts the denoiser calls (NFE) and applies masks, imputation and resampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# importing the families registers their samplers
from polydiff.sampling import adaptive as _adaptive  # noqa: F401
from polydiff.sampling import ancestral as _ancestral  # noqa: F401
from polydiff.sampling import dpmpp as _dpmpp  # noqa: F401
from polydiff.sampling import euler as _euler  # noqa: F401
from polydiff.sampling import pc as _pc  # noqa: F401
from polydiff.sampling import unipc as _unipc  # noqa: F401
from polydiff.sampling.imputation import Imputation
from polydiff.sampling.registry import SAMPLERS, SamplerSpec, get_sampler, register_sampler
from polydiff.sampling.schedules import SCHEDULES, check_sigmas, get_sigmas
from polydiff.sde import SDE
from polydiff.state import Mask, State, apply_mask, check_mask, pack, pack_mask, unpack

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
    project: Callable[[State, Mask], State] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable | None = None,
    known: tuple[State, Mask] | None = None,
    imputation_resample: int = 1,
    imputation_jump: int = 1,
    imputation_guidance: float = 0.0,
    denoise_final: bool = True,
    **options: Any,
) -> SampleResult:
    """Run a named sampler from the SDE's prior; returns the samples and the number of denoiser calls.

    Args:
        noise: standard-normal noise shaped like the state (already shaped by the modality).
        sampler, steps, schedule: the solver, the number of nonzero noise levels and their grid
            (default: the sampler's own); ``sigmas`` gives the grid directly (decreasing, within the
            SDE's range, normally ending in 0).
        mask: valid entries of ragged states; padded entries stay zero.
        cond: keyword arguments for every denoiser call.
        noise_fn: ``noise_fn(raw, mask)`` shapes the fresh noise stochastic samplers draw.
        project: ``project(state, mask)``, the modality's noise-space projection (e.g. zero centre
            of mass): applied to ``noise``, to every fresh noise draw (after ``noise_fn``) and to
            every denoiser output, so the whole run stays in that subspace. It may replace
            ``noise_fn`` when projecting is all the shaping there is.
        generator: for the fresh noise.
        callback: ``callback(i, x, denoised)`` on the packed state at every step.
        known: ``(values, known_mask)`` — impute: the entries where ``known_mask`` is 1 are fixed to
            ``values`` (see :mod:`polydiff.sampling.imputation`).
        imputation_resample: RePaint rounds (1: plain replacement): every block of
            ``imputation_jump`` steps runs that many times, renoised back to the block's first level
            in between (Lugmayr et al. 2022). Each block is its own grid, so multistep solvers
            restart their history per block.
        imputation_guidance: weight of reconstruction guidance on the unknown entries (0: off;
            Ho et al. 2022), see :func:`polydiff.sampling.imputation.reconstruction_guided`.
        denoise_final: True: the last step goes to sigma = 0 and returns D. False: sampling stops at
            the smallest nonzero level and returns the noisy state there.
        options: passed to the sampler (``eta``, ``s_churn``, ``order``, ``rtol`` ...).
    """
    spec = get_sampler(sampler)
    imputation = Imputation(known, imputation_resample, imputation_jump, imputation_guidance)
    if sigmas is None:
        sigmas = get_sigmas(sde, steps, schedule or spec.default_schedule)
    else:
        check_sigmas(sde, sigmas)
    if not denoise_final and sigmas[-1] == 0:
        sigmas = sigmas[:-1]
    cond = dict(cond or {})
    check_mask(noise, mask, "run_sampler mask")
    if project is not None:
        noise = project(noise, mask)
    x_init = sde.prior_sample(noise)
    s0 = float(sigmas[0])
    if abs(s0 - sde.sigma_max) > 1e-6 * sde.sigma_max:
        # the prior of a grid that starts below sigma_max: its excess variance over sigma^2 kept
        std_max = sde.prior_std()
        std0 = math.sqrt(max(std_max**2 - sde.sigma_max**2, 0.0) + s0**2)
        x_init = _scale(x_init, std0 / std_max)
    x_init = apply_mask(x_init, mask)
    flat, layout = pack(x_init)
    sigmas = sigmas.to(device=flat.device, dtype=flat.dtype)
    flat_mask = pack_mask(mask, x_init)
    nfe = 0

    def flat_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        out = denoiser(unpack(x, layout), sigma, **cond)
        if project is not None:
            out = project(out, mask)
        flat_out, _ = pack(out)
        return flat_out if flat_mask is None else flat_out * flat_mask

    def draw(like: Tensor) -> Tensor:
        raw = torch.randn(like.shape, device=like.device, dtype=like.dtype, generator=generator)
        if noise_fn is None and project is None and flat_mask is None:
            return raw
        state = unpack(raw, layout)
        if noise_fn is not None:
            state = noise_fn(state, mask)
        if project is not None:
            state = project(state, mask)
        out, _ = pack(apply_mask(state, mask))
        return out

    x = imputation.run(
        spec, flat_denoiser, flat, sigmas, draw=draw, noise=pack(noise)[0], callback=callback,
        **options,
    )
    if flat_mask is not None:
        x = x * flat_mask
    return SampleResult(unpack(x, layout), nfe, sigmas)


def _scale(state: State, factor: float) -> State:
    if isinstance(state, Mapping):
        return {k: v * factor for k, v in state.items()}
    return state * factor


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
