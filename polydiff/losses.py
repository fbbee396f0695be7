"""Denoising score matching: E_sigma E_eps lambda(sigma) |D(x_0 + sigma eps, sigma) - x_0|^2.

Losses are small callables whose hyperparameters are set once; calling one returns the loss per
sample, shape (B,), reduced over the valid (mask) entries of every tensor in the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff.sde import SDE
from polydiff.state import (
    Mask,
    State,
    apply_mask,
    batch_size,
    masked_mean_per_sample,
    randn_like_state,
    state_device,
    tree_map,
)
from polydiff.state import append_dims as _append

NoiseFn = Callable[[State, Mask], State]


class DSMLoss:
    """Denoising score matching with EDM's log-normal noise levels and loss weighting by default.

    ``weighting``: ``"edm"`` (lambda = (s^2 + sd^2)/(s sd)^2, unit loss at every level) or
    ``"simple"`` (the eps-MSE of DDPM, lambda = 1/sigma^2).
    ``sigma_sampling``: ``"lognormal"`` (ln sigma ~ N(p_mean, p_std^2)) or ``"uniform_t"``.
    """

    def __init__(
        self,
        sde: SDE,
        weighting: str = "edm",
        sigma_sampling: str = "lognormal",
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_data: float = 0.5,
    ):
        if weighting not in ("edm", "simple"):
            raise ValueError(f"unknown weighting {weighting!r}; available: edm, simple")
        if sigma_sampling not in ("lognormal", "uniform_t"):
            raise ValueError(
                f"unknown sigma_sampling {sigma_sampling!r}; available: lognormal, uniform_t"
            )
        self.sde = sde
        self.weighting = weighting
        self.sigma_sampling = sigma_sampling
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.sigma_data = float(sigma_data)

    def sample_sigma(self, n: int, device: torch.device, generator=None) -> Tensor:
        if self.sigma_sampling == "lognormal":
            z = torch.randn(n, device=device, generator=generator)
            sigma = torch.exp(self.p_mean + self.p_std * z)
            return sigma.clamp(self.sde.sigma_min, self.sde.sigma_max)
        u = torch.rand(n, device=device, generator=generator, dtype=torch.float64)
        t = self.sde.t_min + u * (self.sde.t_max - self.sde.t_min)
        return self.sde.sigma(t).to(torch.float32)

    def weight(self, sigma: Tensor) -> Tensor:
        if self.weighting == "edm":
            sd = self.sigma_data
            return (sigma**2 + sd**2) / (sigma * sd) ** 2
        return 1 / sigma**2

    def __call__(
        self,
        denoiser: Callable[..., State],
        x0: State,
        *,
        mask: Mask = None,
        cond: Mapping[str, Any] | None = None,
        noise_fn: NoiseFn | None = None,
        sigma: Tensor | None = None,
    ) -> Tensor:
        b = batch_size(x0)
        device = state_device(x0)
        if sigma is None:
            sigma = self.sample_sigma(b, device)
        noise = randn_like_state(x0)
        if noise_fn is not None:
            noise = noise_fn(noise, mask)
        noise = apply_mask(noise, mask)
        x = tree_map(lambda a, n: a + _append(sigma, a.ndim).to(a.dtype) * n, x0, noise)
        denoised = denoiser(x, sigma, **(cond or {}))
        sq = tree_map(lambda d, a: (d.float() - a.float()) ** 2, denoised, x0)
        per_sample = masked_mean_per_sample(sq, mask)
        return self.weight(sigma) * per_sample


def lognormal_density(sigma: Tensor, p_mean: float, p_std: float) -> Tensor:
    """Density of the log-normal noise-level distribution (used by importance weighting)."""
    z = (torch.log(sigma) - p_mean) / p_std
    return torch.exp(-0.5 * z**2) / (sigma * p_std * math.sqrt(2 * math.pi))
