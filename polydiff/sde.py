"""Forward processes with Gaussian marginals, x_t = s(t) * (x_0 + sigma(t) * eps).

Every class exposes the scale s(t) and noise level sigma(t), their inverse t(sigma), the forward
SDE's drift and diffusion (in the scaled coordinates x_t), the prior, and the network's noise
input. Samplers work in the unscaled view x = x_t / s(t) = x_0 + sigma * eps, where every SDE of
this family becomes dx = sqrt(d sigma^2 / dt) dw — so one solver serves them all.
Tensors of any rank; time and sigma are tensors of shape (B,) or scalars.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polydiff.state import State, append_dims, tree_map


def _t(value: Tensor | float) -> Tensor:
    return value if isinstance(value, Tensor) else torch.tensor(float(value), dtype=torch.float64)


class SDE:
    """Base class: subclasses define ``scale``, ``sigma`` and ``sigma_inv``."""

    name = "sde"
    t_min: float = 0.0
    t_max: float = 1.0

    def scale(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        """The time at which the noise level equals ``sigma``."""
        raise NotImplementedError

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(_t(self.t_min)))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(_t(self.t_max)))

    def prior_std(self) -> float:
        """Standard deviation of the prior in the unscaled view (at ``t_max``)."""
        return self.sigma_max

    def prior_sample(self, noise: State) -> State:
        """Scale standard-normal ``noise`` to a draw from the prior (unscaled view)."""
        std = self.prior_std()
        return tree_map(lambda n: n * std, noise)

    def prior_logp(self, x: Tensor) -> Tensor:
        """Log-density of the prior at unscaled ``x`` (per sample, summed over all dimensions)."""
        std = self.prior_std()
        flat = x.reshape(x.shape[0], -1)
        d = flat.shape[1]
        return -0.5 * (flat**2).sum(1) / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """d sigma(t)^2 / dt, by autograd unless a subclass has the closed form."""
        t = _t(t).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.sigma(t).pow(2).sum(), t)
        return g.detach()

    def dlog_scale_dt(self, t: Tensor) -> Tensor:
        t = _t(t).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(torch.log(self.scale(t)).sum(), t)
        return g.detach()

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t) of the forward SDE in scaled coordinates: f = (d log s / dt) * x."""
        return append_dims(self.dlog_scale_dt(t).to(x.dtype), x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        """g(t) of the forward SDE in scaled coordinates: g^2 = s^2 d sigma^2 / dt."""
        return self.scale(t) * self.dsigma2_dt(t).clamp_min(0).sqrt()

    def c_noise(self, sigma: Tensor) -> Tensor:
        """The noise-level input the network sees (EDM's log(sigma) / 4)."""
        return sigma.log() / 4

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(s(t), sigma(t)): x_t | x_0 ~ N(s x_0, (s sigma)^2 I)."""
        return self.scale(t), self.sigma(t)


class EDM(SDE):
    """Karras et al. (2022): sigma(t) = t, s(t) = 1 — the variance-exploding ODE in the sigma view."""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5):
        self.t_min, self.t_max = float(sigma_min), float(sigma_max)
        self.sigma_data = float(sigma_data)

    def scale(self, t: Tensor) -> Tensor:
        return torch.ones_like(_t(t))

    def sigma(self, t: Tensor) -> Tensor:
        return _t(t)

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        return _t(sigma)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        return 2 * _t(t)


class VP(SDE):
    """Variance-preserving SDE (Song et al. 2021), DDPM's continuous limit.

    ``schedule="linear"``: beta(t) = beta_min + t (beta_max - beta_min).
    ``schedule="cosine"``: alpha_bar(t) = cos^2(((t + s) / (1 + s)) pi / 2) / cos^2(s pi / (2 (1 + s))).
    """

    name = "vp"

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        schedule: str = "linear",
        t_min: float = 1e-3,
        cosine_s: float = 0.008,
    ):
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown VP schedule {schedule!r}: use 'linear' or 'cosine'")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.schedule = schedule
        self.cosine_s = float(cosine_s)
        self.t_min, self.t_max = float(t_min), 1.0 if schedule == "linear" else 0.9946

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        t = _t(t)
        if self.schedule == "linear":
            return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        s = self.cosine_s
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return torch.log(f) - math.log(math.cos(s / (1 + s) * math.pi / 2) ** 2)

    def beta(self, t: Tensor) -> Tensor:
        t = _t(t)
        if self.schedule == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        s = self.cosine_s
        return math.pi / (1 + s) * torch.tan((t + s) / (1 + s) * math.pi / 2)

    def scale(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_bar(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(-self.log_alpha_bar(t)))

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        log_ab = -torch.log1p(_t(sigma) ** 2)  # log alpha_bar
        if self.schedule == "linear":
            b0, b1 = self.beta_min, self.beta_max - self.beta_min
            # solve 0.5 b1 t^2 + b0 t + log_ab = 0 for t >= 0
            return (-b0 + torch.sqrt(b0**2 - 2 * b1 * log_ab)) / b1
        s = self.cosine_s
        c0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
        return torch.arccos(torch.sqrt(torch.exp(log_ab) * c0)) * 2 * (1 + s) / math.pi - s

    def prior_std(self) -> float:
        # the scaled prior is N(0, I): in the unscaled view that is 1 / s(T) = sqrt(1 + sigma_max^2)
        return math.sqrt(1.0 + self.sigma_max**2)

    def dlog_scale_dt(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        return self.beta(t) * torch.exp(-self.log_alpha_bar(t))

    def c_noise(self, sigma: Tensor) -> Tensor:
        # DDPM networks see the discrete step index; 999 t keeps that convention
        return 999 * self.sigma_inv(sigma)


SDES = {"edm": EDM, "vp": VP}


def build_sde(config: dict) -> SDE:
    """An SDE from a config section ``{"name": ..., **kwargs}``."""
    cfg = dict(config)
    name = cfg.pop("name", "edm")
    if name not in SDES:
        raise ValueError(f"unknown sde {name!r}; available: {', '.join(sorted(SDES))}")
    return SDES[name](**cfg)
