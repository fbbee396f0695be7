"""Samplers by name. Each sampler is one function with the shared signature

    fn(denoiser, x, sigmas, *, noise, callback=None, **options) -> x

on a packed ``(B, D)`` state: ``denoiser(x, sigma)`` returns the x_0 estimate for noise levels
``sigma`` of shape (B,), ``sigmas`` is a decreasing 1-D tensor of noise levels ending in 0,
``noise(like)`` draws shaped standard-normal noise, and ``callback(i, x, denoised)`` observes steps.

A grid normally ends in 0: the step to sigma = 0 returns the denoised estimate of the last noise
level (every sampler here does so). A grid that ends above 0 stops there and returns the noisy
state (``run_sampler(..., denoise_final=False)``). Every sampler accepts both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    fn: Callable
    stochastic: bool
    description: str
    default_schedule: str = "karras"
    nfe: str = "steps"  # denoiser calls as a function of the number of nonzero noise levels


SAMPLERS: dict[str, SamplerSpec] = {}


def register_sampler(
    name: str,
    *,
    stochastic: bool,
    description: str,
    default_schedule: str = "karras",
    nfe: str = "steps",
) -> Callable[[Callable], Callable]:
    """Register ``fn`` under ``name``; ``nfe`` documents its denoiser calls per grid of ``steps``."""

    def wrap(fn: Callable) -> Callable:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        SAMPLERS[name] = SamplerSpec(name, fn, stochastic, description, default_schedule, nfe)
        return fn

    return wrap


def get_sampler(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; available: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]
