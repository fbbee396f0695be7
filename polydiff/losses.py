"""Denoising score matching: E_sigma E_eps lambda(sigma) |D(x_0 + sigma eps, sigma) - x_0|^2.

Losses are small callables whose hyperparameters are set once; calling one returns the loss per
sample, shape (B,): the mean over the valid (mask) entries of every tensor in the state of
lambda(sigma) |D - x_0|^2, with lambda taken per element when the noise levels are per element.

Every weighting is written for the x_0-error |D - x_0|^2 in the unscaled view x = x_0 + sigma eps
(sd = ``sigma_data``, SNR = 1/sigma^2 — the SNR s^2/(s sigma)^2 of every SDE of the family):

- ``"simple"``: lambda = 1/sigma^2 — DDPM's eps-MSE, since |eps_hat - eps|^2 = |D - x_0|^2/sigma^2.
- ``"edm"``: lambda = (sigma^2 + sd^2)/(sigma sd)^2 (Karras et al. 2022), unit loss at every level
  for data of std sd.
- ``"min_snr"``: lambda = min(SNR, gamma) = min(1/sigma^2, gamma) (Hang et al. 2023, min-SNR-gamma;
  their x_0-loss weight, which is min(SNR, gamma)/SNR on the eps-MSE).
- ``"likelihood"``: Song et al. (2021) weight lambda(t) = g(t)^2 on the score error in scaled
  coordinates. With the scaled score error |s_theta - grad log p_0t|^2 = |D - x_0|^2 / (s sigma^2)^2
  and g^2 = s^2 d sigma^2/dt this is lambda = (d sigma^2/dt) / sigma^4 at t = t(sigma) — on the
  eps-MSE, (d sigma^2/dt)/sigma^2 = g^2/(s sigma)^2, "g^2 over the kernel's variance". Sampled with
  uniform t (``sigma_sampling="uniform_t"``) its expectation is 2/(D (t_max - t_min)) times the
  score-matching part of the ELBO of Song et al. (2021, "Maximum likelihood training ..."), D the
  number of (valid) entries.

Noise levels (``sigma_sampling``):

- ``"lognormal"``: ln sigma ~ N(p_mean, p_std^2), clamped to [sigma_min, sigma_max] (EDM).
- ``"uniform_t"``: t ~ U[t_min, t_max], sigma = sigma(t).
- ``"importance"``: t with density q(t) ∝ g^2/(s sigma)^2 = d log sigma^2 / dt (the importance
  sampling of Song et al. 2021 for likelihood weighting), by inverse CDF on a fine grid; the loss is
  multiplied by p_uniform(t)/q(t) = 1/((t_max - t_min) q(t)), so it estimates the same objective as
  ``"uniform_t"`` without bias, and with ``weighting="likelihood"`` the weight on the eps-MSE becomes
  the constant Z/(t_max - t_min), Z = 2 log(sigma_max/sigma_min) (up to the grid's error). (In closed
  form q is "log sigma uniform"; the grid keeps the sampler generic over SDEs.)

Per-element noise levels: ``sigma`` passed to a call may be ``(B,)``, a tensor of the leading
dimensions of the state (one level per node, per pixel, ...), or a mapping of such tensors for a
mapping state (see :mod:`polydiff.param`); noise is scaled and lambda is applied element by element,
and the denoiser receives ``sigma`` as given. Levels passed explicitly are weighted by lambda only
(no importance correction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff.param import Sigma, broadcast_sigma, normalise_sigma
from polydiff.sde import SDE
from polydiff.state import (
    Mask,
    State,
    apply_mask,
    batch_size,
    check_mask,
    expand_mask,
    mask_leaf,
    masked_mean_per_sample,
    randn_like_state,
    state_device,
    tree_map,
)

NoiseFn = Callable[[State, Mask], State]

WEIGHTINGS = ("edm", "simple", "likelihood", "min_snr")
SIGMA_SAMPLINGS = ("lognormal", "uniform_t", "importance")


class DSMLoss:
    """Denoising score matching with EDM's log-normal noise levels and loss weighting by default.

    ``weighting``: one of :data:`WEIGHTINGS` (module docstring); ``min_snr_gamma`` is min-SNR's gamma.
    ``sigma_sampling``: one of :data:`SIGMA_SAMPLINGS`; ``importance_grid`` points per sub-grid of
    the importance sampler's inverse CDF.
    """

    def __init__(
        self,
        sde: SDE,
        weighting: str = "edm",
        sigma_sampling: str = "lognormal",
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_data: float = 0.5,
        min_snr_gamma: float = 5.0,
        importance_grid: int = 4096,
    ):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; available: {', '.join(WEIGHTINGS)}")
        if sigma_sampling not in SIGMA_SAMPLINGS:
            raise ValueError(
                f"unknown sigma_sampling {sigma_sampling!r}; available: {', '.join(SIGMA_SAMPLINGS)}"
            )
        if min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be positive, got {min_snr_gamma}")
        self.sde = sde
        self.weighting = weighting
        self.sigma_sampling = sigma_sampling
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.sigma_data = float(sigma_data)
        self.min_snr_gamma = float(min_snr_gamma)
        self.importance_grid = int(importance_grid)
        self._grid: tuple[Tensor, Tensor] | None = None
        self._grid_on: dict[torch.device, tuple[Tensor, Tensor]] = {}

    # ---- noise levels ------------------------------------------------------------------------

    def sample_sigma(self, n: int, device: torch.device, generator=None) -> Tensor:
        """``n`` noise levels drawn by ``sigma_sampling`` (float32)."""
        return self._sample(n, device, generator)[0]

    def _sample(self, n: int, device, generator=None) -> tuple[Tensor, Tensor | None]:
        """(sigma, correction): correction = p_uniform(t)/q(t) for importance sampling, else None."""
        if self.sigma_sampling == "lognormal":
            z = torch.randn(n, device=device, generator=generator)
            sigma = torch.exp(self.p_mean + self.p_std * z)
            return sigma.clamp(self.sde.sigma_min, self.sde.sigma_max), None
        u = torch.rand(n, device=device, generator=generator, dtype=torch.float64)
        if self.sigma_sampling == "uniform_t":
            t = self.sde.t_min + u * (self.sde.t_max - self.sde.t_min)
            return self.sde.sigma(t).to(torch.float32), None
        t, q = self._inverse_cdf(u)
        correction = 1.0 / ((self.sde.t_max - self.sde.t_min) * q)
        return self.sde.sigma(t).to(torch.float32), correction.to(torch.float32)

    def importance_target(self, t: Tensor) -> Tensor:
        """The unnormalised importance density g^2/(s sigma)^2 = (d sigma^2/dt) / sigma^2."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sde.dsigma2_dt(t) / self.sde.sigma(t) ** 2

    def _importance_grid(self) -> tuple[Tensor, Tensor]:
        """(t grid, normalised CDF) on CPU in float64, built once.

        The grid joins n points uniform in t with n points uniform in log sigma (mapped to t), so
        it is fine both where the density is flat and where it behaves like 1/t; the CDF is the
        trapezoidal integral of :meth:`importance_target`.
        """
        if self._grid is None:
            sde, n = self.sde, max(self.importance_grid, 2)
            lo, hi = sde.t_min, sde.t_max
            uniform = torch.linspace(lo, hi, n, dtype=torch.float64)
            log_s = torch.linspace(math.log(sde.sigma_min), math.log(sde.sigma_max), n)
            by_sigma = sde.sigma_inv(torch.exp(log_s.to(torch.float64))).clamp(lo, hi)
            t = torch.unique(torch.cat([uniform, by_sigma]))  # sorted
            f = self.importance_target(t)
            cdf = torch.cat([f.new_zeros(1), torch.cumsum(0.5 * (f[1:] + f[:-1]) * t.diff(), 0)])
            self._grid = (t, cdf / cdf[-1])
        return self._grid

    def _grid_for(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._grid_on:
            self._grid_on[device] = tuple(g.to(device) for g in self._importance_grid())
        return self._grid_on[device]

    def _inverse_cdf(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """t = F^-1(u) (piecewise linear F) and the sampler's exact density q(t) (piecewise constant)."""
        t_grid, cdf = self._grid_for(u.device)
        i = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, len(cdf) - 2)
        mass = cdf[i + 1] - cdf[i]
        width = t_grid[i + 1] - t_grid[i]
        frac = ((u - cdf[i]) / mass.clamp_min(1e-300)).clamp(0, 1)
        return t_grid[i] + frac * width, mass / width

    def importance_density(self, t: Tensor) -> Tensor:
        """The density q(t) the importance sampler draws t from (0 outside [t_min, t_max])."""
        t = torch.as_tensor(t, dtype=torch.float64)
        t_grid, cdf = self._grid_for(t.device)
        i = (torch.searchsorted(t_grid, t, right=True) - 1).clamp(0, len(t_grid) - 2)
        q = (cdf[i + 1] - cdf[i]) / (t_grid[i + 1] - t_grid[i])
        inside = (t >= t_grid[0]) & (t <= t_grid[-1])
        return torch.where(inside, q, torch.zeros_like(q))

    # ---- weighting ---------------------------------------------------------------------------

    def weight(self, sigma: Tensor) -> Tensor:
        """lambda(sigma) on the x_0-error, elementwise (any shape)."""
        if self.weighting == "edm":
            sd = self.sigma_data
            return (sigma**2 + sd**2) / (sigma * sd) ** 2
        if self.weighting == "simple":
            return 1 / sigma**2
        if self.weighting == "min_snr":
            return torch.clamp(1 / sigma**2, max=self.min_snr_gamma)
        s64 = sigma.to(torch.float64)
        lam = self.sde.dsigma2_dt(self.sde.sigma_inv(s64)) / s64**4
        return lam.to(sigma.dtype)

    # ---- the loss ----------------------------------------------------------------------------

    def __call__(
        self,
        denoiser: Callable[..., State],
        x0: State,
        *,
        mask: Mask = None,
        cond: Mapping[str, Any] | None = None,
        noise_fn: NoiseFn | None = None,
        project: NoiseFn | None = None,
        sigma: Sigma | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample loss ``(B,)``; ``generator`` draws the levels and the noise.

        ``project(state, mask)``: the modality's noise-space projection, applied to the noise and
        to the denoiser's output (``noise_fn``, contract 1's hook, to the noise only).
        """
        check_mask(x0, mask, "loss")
        b = batch_size(x0)
        device = state_device(x0)
        correction = None
        if sigma is None:
            sigma, correction = self._sample(b, device, generator)
        sigma = normalise_sigma(sigma, x0)
        levels = broadcast_sigma(sigma, x0)
        noise = randn_like_state(x0, generator)
        if noise_fn is not None:
            noise = noise_fn(noise, mask)
        if project is not None:
            noise = project(noise, mask)
        noise = apply_mask(noise, mask)
        x = tree_map(lambda a, s, n: a + s.to(a.dtype) * n, x0, levels, noise)
        denoised = denoiser(x, sigma, **(cond or {}))
        if project is not None:
            denoised = project(denoised, mask)

        def sq_err(d: Tensor, a: Tensor, s: Tensor) -> Tensor:
            dt = torch.promote_types(a.dtype, torch.float32)
            return self.weight(s.to(dt)) * (d.to(dt) - a.to(dt)) ** 2

        weighted = zero_padded(tree_map(sq_err, denoised, x0, levels), mask)
        per_sample = masked_mean_per_sample(weighted, mask)
        if correction is not None:
            per_sample = per_sample * correction.to(per_sample.dtype)
        return per_sample


def zero_padded(values: State, mask: Mask) -> State:
    """Padded entries set to 0 (not multiplied: their weight may be infinite at level 0)."""
    if mask is None:
        return values

    def one(v: Tensor, key: str | None) -> Tensor:
        m = expand_mask(mask_leaf(mask, key), v)
        return v if m is None else torch.where(m > 0, v, torch.zeros_like(v))

    if isinstance(values, Mapping):
        return {k: one(v, k) for k, v in values.items()}
    return one(values, None)


def lognormal_density(sigma: Tensor, p_mean: float, p_std: float) -> Tensor:
    """Density of the log-normal noise-level distribution (used by importance weighting)."""
    z = (torch.log(sigma) - p_mean) / p_std
    return torch.exp(-0.5 * z**2) / (sigma * p_std * math.sqrt(2 * math.pi))
