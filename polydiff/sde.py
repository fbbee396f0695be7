"""Forward processes with Gaussian marginals, x_t = s(t) * (x_0 + sigma(t) * eps).

Every class exposes the scale s(t) and noise level sigma(t), their inverse t(sigma), the forward
SDE's drift and diffusion (in the scaled coordinates x_t), the prior, the network's noise input
and its discrete chain (DDPM for VP / sub-VP, SMLD for VE). Samplers work in the unscaled view
x = x_t / s(t) = x_0 + sigma * eps, where every SDE of this family becomes
dx = sqrt(d sigma^2 / dt) dw — so one solver serves them all.

The shared view fixes the scaled-coordinate SDE: a linear SDE dx = f(t) x dt + g(t) dw has the
marginal N(s x_0, (s sigma)^2 I) exactly when f = d log s / dt and g^2 = s^2 d sigma^2 / dt
(differentiate Var = s^2 sigma^2 along dVar/dt = 2 f Var + g^2). Each class below checks that this
agrees with its paper's SDE (it does for all four, sub-VP included).

| name    | s(t)              | sigma(t)                        | paper SDE                                  |
|---------|-------------------|---------------------------------|--------------------------------------------|
| "vp"    | sqrt(abar)        | sqrt(1/abar - 1)                | dx = -beta x/2 dt + sqrt(beta) dw          |
| "subvp" | sqrt(abar)        | (1 - abar)/sqrt(abar)           | dx = -beta x/2 dt + sqrt(beta (1 - abar^2)) dw |
| "ve"    | 1                 | smin (smax/smin)^t              | dx = sqrt(d sigma^2/dt) dw                 |
| "edm"   | 1                 | t                               | dx = sqrt(2 t) dw                          |

with abar(t) = exp(-int_0^t beta). Tensors of any rank, or mappings of tensors (states); time and
sigma are tensors of shape (B,) (or any leading shape: they broadcast with trailing singleton
dimensions) or scalars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from polydiff.state import Mask, State, append_dims, expand_mask, mask_leaf, tree_map


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

    # ---- prior -------------------------------------------------------------------------------

    def prior_std(self) -> float:
        """Standard deviation of the prior in the unscaled view (at ``t_max``)."""
        return self.sigma_max

    def prior_sample(self, noise: State) -> State:
        """Scale standard-normal ``noise`` to a draw from the prior (unscaled view)."""
        std = self.prior_std()
        return tree_map(lambda n: n * std, noise)

    def prior_logp(self, x: State, mask: Mask = None, dims: Tensor | None = None) -> Tensor:
        """Log-density of the prior N(0, prior_std^2 I) at unscaled ``x``, per sample ``(B,)``.

        Summed over every valid entry (``mask``) of every tensor of the state; ``dims`` (B,)
        replaces the count of valid entries when ``x`` lies in a subspace of that dimension
        (a modality's noise space), the Gaussian being the one of that subspace.
        """
        std = self.prior_std()
        items = x.items() if isinstance(x, Mapping) else [(None, x)]
        sq = None
        count = None
        for key, v in items:
            m = expand_mask(mask_leaf(mask, key), v)
            if m is not None:
                v = torch.where(m > 0, v, torch.zeros_like(v))
            flat = v.reshape(v.shape[0], -1)
            s = (flat**2).sum(1)
            c = (
                torch.full_like(s, flat.shape[1])
                if m is None
                else (m.reshape(v.shape[0], -1) > 0).to(s.dtype).sum(1)
            )
            sq = s if sq is None else sq + s
            count = c if count is None else count + c
        if dims is not None:
            count = dims.to(sq.dtype)
        return -0.5 * sq / std**2 - count * (math.log(std) + 0.5 * math.log(2 * math.pi))

    # ---- the forward SDE ---------------------------------------------------------------------

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """d sigma(t)^2 / dt, by autograd unless a subclass has the closed form."""
        t = _t(t).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.sigma(t).pow(2).sum()
            if not out.requires_grad:
                return torch.zeros_like(t).detach()
            (g,) = torch.autograd.grad(out, t)
        return g.detach()

    def dlog_scale_dt(self, t: Tensor) -> Tensor:
        """d log s(t) / dt, by autograd unless a subclass has the closed form."""
        t = _t(t).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = torch.log(self.scale(t)).sum()
            if not out.requires_grad:
                return torch.zeros_like(t).detach()
            (g,) = torch.autograd.grad(out, t)
        return g.detach()

    def drift(self, x: State, t: Tensor) -> State:
        """f(x, t) of the forward SDE in scaled coordinates: f = (d log s / dt) * x."""
        rate = self.dlog_scale_dt(t)
        return tree_map(lambda v: append_dims(rate.to(v.dtype), v.ndim) * v, x)

    def diffusion(self, t: Tensor) -> Tensor:
        """g(t) of the forward SDE in scaled coordinates: g^2 = s^2 d sigma^2 / dt."""
        return self.scale(t) * self.dsigma2_dt(t).clamp_min(0).sqrt()

    def c_noise(self, sigma: Tensor) -> Tensor:
        """The noise-level input the network sees (EDM's log(sigma) / 4)."""
        return sigma.log() / 4

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(s(t), sigma(t)): x_t | x_0 ~ N(s x_0, (s sigma)^2 I)."""
        return self.scale(t), self.sigma(t)

    # ---- the discrete chain ------------------------------------------------------------------

    def discrete_times(self, n: int) -> Tensor:
        """The times of the ``n`` levels of :meth:`discrete_sigmas` (ascending, float64)."""
        _check_n(n)
        return torch.linspace(self.t_min, self.t_max, n, dtype=torch.float64)

    def discrete_sigmas(self, n: int) -> Tensor:
        """The ``n`` noise levels of the SDE's discrete chain, ascending (float64).

        The base class samples sigma(t) on a uniform grid of t in [t_min, t_max].
        """
        return self.sigma(self.discrete_times(n))


def _check_n(n: int) -> None:
    if int(n) < 1:
        raise ValueError(f"a discrete chain needs n >= 1 levels, got {n}")


class EDM(SDE):
    """Karras et al. (2022): sigma(t) = t, s(t) = 1 — the variance-exploding ODE in the sigma view.

    Forward SDE dx = sqrt(2 t) dw; prior N(0, sigma_max^2 I).
    """

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

    def dlog_scale_dt(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t(t))

    def discrete_times(self, n: int, rho: float = 7.0) -> Tensor:
        return self.discrete_sigmas(n, rho)

    def discrete_sigmas(self, n: int, rho: float = 7.0) -> Tensor:
        """Karras et al. (2022) Eq. 5 (uniform in sigma^(1/rho)), ascending from sigma_min."""
        _check_n(n)
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        lo, hi = self.t_min ** (1 / rho), self.t_max ** (1 / rho)
        return (lo + ramp * (hi - lo)) ** rho


class VE(SDE):
    """Variance-exploding SDE of SMLD / NCSN (Song et al. 2021): s = 1,
    sigma(t) = sigma_min (sigma_max / sigma_min)^t on t in [t_min, 1].

    Forward SDE dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dw; prior N(0, sigma_max^2 I).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 0.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.s_lo, self.s_hi = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.s_hi / self.s_lo)
        self.t_min, self.t_max = float(t_min), 1.0

    def scale(self, t: Tensor) -> Tensor:
        return torch.ones_like(_t(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.s_lo * torch.exp(_t(t) * self._log_ratio)

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        return torch.log(_t(sigma) / self.s_lo) / self._log_ratio

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        return 2 * self._log_ratio * self.sigma(t) ** 2

    def dlog_scale_dt(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t(t))

    def discrete_times(self, n: int) -> Tensor:
        _check_n(n)
        return torch.linspace(0.0, 1.0, n, dtype=torch.float64)

    def discrete_sigmas(self, n: int) -> Tensor:
        """The SMLD chain: ``n`` geometric levels from sigma_min to sigma_max (ascending)."""
        return self.sigma(self.discrete_times(n))


class _BetaSDE(SDE):
    """What VP and sub-VP share: beta(t), abar(t) = exp(-int_0^t beta) and the DDPM chain.

    ``schedule="linear"``: beta(t) = beta_min + t (beta_max - beta_min), t in [t_min, 1].
    ``schedule="cosine"`` (Nichol & Dhariwal 2021): abar(t) = f(t) / f(0),
    f(t) = cos^2(((t + s) / (1 + s)) pi / 2), so beta(t) = pi / (1 + s) tan(((t + s)/(1 + s)) pi / 2);
    t in [t_min, 0.9946] (beta diverges at t = 1).
    """

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        schedule: str = "linear",
        t_min: float = 1e-3,
        cosine_s: float = 0.008,
    ):
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown {self.name} schedule {schedule!r}: use 'linear' or 'cosine'")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.schedule = schedule
        self.cosine_s = float(cosine_s)
        self.t_min, self.t_max = float(t_min), 1.0 if schedule == "linear" else 0.9946

    def _cos_angle(self, t: Tensor) -> Tensor:
        s = self.cosine_s
        return (t + s) / (1 + s) * math.pi / 2

    def _log_f0(self) -> float:
        return 2 * math.log(math.cos(self.cosine_s / (1 + self.cosine_s) * math.pi / 2))

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """log abar(t) = -int_0^t beta."""
        t = _t(t)
        if self.schedule == "linear":
            return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)
        # clamp: rounding must not make abar(0) exceed 1
        return (2 * torch.log(torch.cos(self._cos_angle(t))) - self._log_f0()).clamp(max=0)

    def beta(self, t: Tensor) -> Tensor:
        t = _t(t)
        if self.schedule == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        return math.pi / (1 + self.cosine_s) * torch.tan(self._cos_angle(t))

    def _t_from_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        if self.schedule == "linear":
            b0, b1 = self.beta_min, self.beta_max - self.beta_min
            # the root t >= 0 of 0.5 b1 t^2 + b0 t + log_ab = 0, in the form without cancellation
            return -2 * log_ab / (b0 + torch.sqrt(b0**2 - 2 * b1 * log_ab))
        # cos(angle)^2 = abar f(0): angle = atan2(sqrt(1 - abar f(0)), sqrt(abar f(0)))
        log_c = log_ab + self._log_f0()
        angle = torch.atan2(torch.sqrt(-torch.expm1(log_c)), torch.exp(0.5 * log_c))
        s = self.cosine_s
        return angle * 2 * (1 + s) / math.pi - s

    def scale(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_bar(t))

    def dlog_scale_dt(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def prior_std(self) -> float:
        # the prior is N(0, I) in the scaled coordinates x_T; unscaled x = x_T / s(T)
        return float(1.0 / self.scale(_t(self.t_max)))

    def c_noise(self, sigma: Tensor) -> Tensor:
        # DDPM networks see the discrete step index; 999 t keeps that convention
        return 999 * self.sigma_inv(sigma)

    # ---- the DDPM chain ------------------------------------------------------------------------

    def discrete_times(self, n: int) -> Tensor:
        """t_i = t_max i / n for the chain's steps i = 1..n."""
        _check_n(n)
        return torch.arange(1, n + 1, dtype=torch.float64) / n * self.t_max

    def discrete_betas(self, n: int) -> Tensor:
        """The ``n`` betas of the DDPM chain (float64).

        Linear: betas evenly spaced from beta_min / n to beta_max / n (Ho et al. 2020 with
        n = 1000 gives 1e-4 .. 0.02). Cosine (Nichol & Dhariwal 2021): beta_i = 1 - abar(t_i) /
        abar(t_{i-1}) at t_i = :meth:`discrete_times`. Both are clipped at 0.999 (which a linear
        chain only reaches for n < beta_max / 0.999, where it stops being a valid chain).
        """
        _check_n(n)
        if self.schedule == "linear":
            b = torch.linspace(self.beta_min / n, self.beta_max / n, n, dtype=torch.float64)
            return b.clamp(max=0.999)
        t = torch.cat([torch.zeros(1, dtype=torch.float64), self.discrete_times(n)])
        log_ab = self.log_alpha_bar(t)
        return (-torch.expm1(log_ab[1:] - log_ab[:-1])).clamp(max=0.999)

    def discrete_log_alpha_bar(self, n: int) -> Tensor:
        """log of the chain's cumulative product abar_i = prod_{j <= i} (1 - beta_j)."""
        return torch.cumsum(torch.log1p(-self.discrete_betas(n)), 0)


class VP(_BetaSDE):
    """Variance-preserving SDE (Song et al. 2021), DDPM's continuous limit.

    dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw; s = sqrt(abar), sigma = sqrt(1/abar - 1);
    prior N(0, I) in scaled coordinates = N(0, 1/s(T)^2 I) = N(0, (1 + sigma_max^2) I) unscaled.
    """

    name = "vp"

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(-self.log_alpha_bar(t)))

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        return self._t_from_log_alpha_bar(-torch.log1p(_t(sigma) ** 2))

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        # sigma^2 = 1/abar - 1 and d abar / dt = -beta abar
        return self.beta(t) * torch.exp(-self.log_alpha_bar(t))

    def discrete_sigmas(self, n: int) -> Tensor:
        """The DDPM chain's levels sigma_i = sqrt(1 / abar_i - 1), ascending."""
        return torch.sqrt(torch.expm1(-self.discrete_log_alpha_bar(n)))


class SubVP(_BetaSDE):
    """Sub-VP SDE (Song et al. 2021, Eq. 31): dx = -beta x / 2 dt + sqrt(beta (1 - abar^2)) dw.

    Marginal N(sqrt(abar) x_0, (1 - abar)^2 I): s = sqrt(abar), sigma = (1 - abar) / sqrt(abar).
    The shared view's g^2 = s^2 d sigma^2/dt = abar * beta (1 - abar^2) / abar = beta (1 - abar^2)
    is the paper's diffusion exactly, so nothing needs overriding; ``diffusion`` uses the paper's
    form only because it is the better-conditioned expression. Prior N(0, I) in scaled
    coordinates (as the paper), i.e. N(0, 1/s(T)^2 I) unscaled.
    """

    name = "subvp"

    def sigma(self, t: Tensor) -> Tensor:
        log_ab = self.log_alpha_bar(t)
        return -torch.expm1(log_ab) * torch.exp(-0.5 * log_ab)

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        # sigma = 1/a - a with a = sqrt(abar): a = 2 / (sigma + sqrt(sigma^2 + 4))
        sigma = _t(sigma)
        a = 2 / (sigma + torch.sqrt(sigma**2 + 4))
        return self._t_from_log_alpha_bar(2 * torch.log(a))

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        # sigma^2 = (1 - abar)^2 / abar  =>  d sigma^2/dt = beta (1/abar - abar)
        log_ab = self.log_alpha_bar(t)
        return self.beta(t) * 2 * torch.sinh(-log_ab)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(-self.beta(t) * torch.expm1(2 * self.log_alpha_bar(t)))

    def discrete_sigmas(self, n: int) -> Tensor:
        """sigma_i = (1 - abar_i) / sqrt(abar_i) on the DDPM chain's abar_i, ascending."""
        log_ab = self.discrete_log_alpha_bar(n)
        return -torch.expm1(log_ab) * torch.exp(-0.5 * log_ab)


SDES = {"vp": VP, "subvp": SubVP, "ve": VE, "edm": EDM}


def build_sde(config: dict) -> SDE:
    """An SDE from a config section ``{"name": ..., **kwargs}``."""
    cfg = dict(config)
    name = cfg.pop("name", "edm")
    if name not in SDES:
        raise ValueError(f"unknown sde {name!r}; available: {', '.join(sorted(SDES))}")
    return SDES[name](**cfg)
