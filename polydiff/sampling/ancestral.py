"""Ancestral samplers on the sigma grid: DDPM's posterior step and DDIM with any eta.

In the unscaled view x_s = x_0 + s eps, the forward chain from s' < s to s adds noise of variance
s^2 - s'^2, so the exact posterior of the earlier level is

    q(x_s' | x_s, x_0) = N(x_0 + (s'^2 / s^2)(x_s - x_0),  s'^2 (1 - s'^2 / s^2) I),

the sigma-view form of DDPM's q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eq. 7) for any SDE of the
family. Samplers plug D(x_s, s) in for x_0.
"""

from __future__ import annotations

import math

from polydiff.sampling.common import sigma_batch
from polydiff.sampling.registry import register_sampler


@register_sampler(
    "ddpm",
    stochastic=True,
    description="Ancestral sampling with DDPM's exact posterior q(x_s' | x_s, x_0 = D) (Ho et al. 2020)",
    nfe="steps",
)
def sample_ddpm(denoiser, x, sigmas, *, noise, callback=None):
    """Ho et al. (2020) Alg. 2 on the sigma grid: x_s' ~ q(x_s' | x_s, x_0 = D(x_s, s))."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        ratio = (s_next / s) ** 2
        x = denoised + ratio * (x - denoised)
        if s_next > 0:
            x = x + s_next * math.sqrt(1 - ratio) * noise(x)
    return x


@register_sampler(
    "ddim",
    stochastic=True,
    description="DDIM with stochasticity eta (Song, Meng & Ermon 2021); eta=0 deterministic, eta=1 DDPM",
    nfe="steps",
)
def sample_ddim(denoiser, x, sigmas, *, noise=None, callback=None, eta: float = 0.0):
    """Song et al. (2021) Eq. 12: x_s' = D + sqrt(s'^2 - s_up^2) eps_hat + s_up z, s_up = eta * posterior std."""
    if eta < 0:
        raise ValueError(f"ddim needs eta >= 0, got {eta}")
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        s_up = min(eta * s_next * math.sqrt(1 - (s_next / s) ** 2), s_next)
        s_down = math.sqrt(s_next**2 - s_up**2)
        # eps_hat = (x - D) / s, so D + s_down * eps_hat:
        x = denoised + (s_down / s) * (x - denoised)
        if s_up > 0:
            x = x + s_up * noise(x)
    return x


@register_sampler(
    "consistency",
    stochastic=True,
    description="Multistep consistency sampling (Song et al. 2023, Alg. 1): D, then fresh noise",
    nfe="steps",
)
def sample_consistency(denoiser, x, sigmas, *, noise, callback=None):
    """x <- D(x, s); x <- x + s' z at each next level s' > 0. The sampler of a consistency student,
    whose D maps any point of an ODE trajectory to its end; with one level it is one call."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        x = denoised
        if sig[i + 1] > 0:
            x = x + sig[i + 1] * noise(x)
    return x
