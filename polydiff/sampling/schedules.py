"""Noise-level grids: decreasing tensors of sigma with a final 0 appended."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polydiff.sde import SDE

#: "tuned" names the grid a run folder stores for its model and solver (``polydiff schedule``);
#: it is resolved by :func:`polydiff.tuning.schedule_options`, not here
TUNED = "tuned"
#: the grids :func:`get_sigmas` builds from the SDE alone
GRIDS = ("karras", "uniform", "quadratic", "logsnr")
SCHEDULES = (*GRIDS, TUNED)


def _append_zero(s: Tensor) -> Tensor:
    return torch.cat([s, s.new_zeros(1)])


def karras(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022) Eq. 5: uniform in sigma^(1/rho)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def get_sigmas(
    sde: SDE, steps: int, schedule: str = "karras", rho: float = 7.0, dtype=torch.float32
) -> Tensor:
    """``steps`` noise levels from ``sde.sigma_max`` down to ``sde.sigma_min``, then 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    smin, smax = sde.sigma_min, sde.sigma_max
    if schedule == "karras":
        s = karras(smin, smax, steps, rho)
    elif schedule in ("uniform", "quadratic"):
        ramp = torch.linspace(1, 0, steps, dtype=torch.float64)
        if schedule == "quadratic":
            ramp = ramp**2
        t = sde.t_min + ramp * (sde.t_max - sde.t_min)
        s = _append_zero(sde.sigma(t))
    elif schedule == "logsnr":
        # uniform in log-SNR = -2 log sigma
        s = _append_zero(
            torch.exp(torch.linspace(math.log(smax), math.log(smin), steps, dtype=torch.float64))
        )
    elif schedule == TUNED:
        raise ValueError(
            "the tuned schedule belongs to a run folder: pass sigmas="
            "polydiff.tuning.tuned_sigmas(run_dir, sampler, steps)"
        )
    else:
        raise ValueError(f"unknown schedule {schedule!r}; available: {', '.join(GRIDS)}")
    return s.to(dtype)


def check_sigmas(sde: SDE, sigmas: Tensor) -> None:
    """Raise unless ``sigmas`` is 1-D, strictly decreasing and inside the SDE's noise range."""
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError("sigmas must be a 1-D tensor of at least two noise levels")
    s = sigmas.detach().to("cpu", torch.float64)
    if not bool((s[:-1] > s[1:]).all()) or bool((s < 0).any()):
        raise ValueError("sigmas must be strictly decreasing and non-negative")
    nonzero = s[s > 0]
    hi, lo = float(nonzero.max()), float(nonzero.min())
    if hi > sde.sigma_max * (1 + 1e-4) or lo < sde.sigma_min * (1 - 1e-4):
        raise ValueError(
            f"sigmas span [{lo:.4g}, {hi:.4g}] but the {sde.name} SDE covers "
            f"[{sde.sigma_min:.4g}, {sde.sigma_max:.4g}]; build the grid with get_sigmas(sde, ...)"
        )
