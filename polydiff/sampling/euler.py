"""First- and second-order solvers in the sigma view."""

from __future__ import annotations

import math

import torch

from polydiff.sampling.registry import register_sampler


def _sigma_batch(sigma, x):
    return sigma.expand(x.shape[0]).to(x.dtype)


def _d(x, sigma, denoised):
    """dx/dsigma of the probability-flow ODE: (x - D(x, sigma)) / sigma."""
    return (x - denoised) / sigma


@register_sampler(
    "euler_maruyama",
    stochastic=True,
    description="Euler–Maruyama on the reverse-time SDE (Song et al. 2021)",
)
def sample_euler_maruyama(denoiser, x, sigmas, *, noise, callback=None):
    """Reverse SDE dx = 2 (x - D)/sigma dsigma + sqrt(-2 sigma dsigma) dw, last step noiseless."""
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _sigma_batch(s, x))
        if callback is not None:
            callback(i, x, denoised)
        if s_next == 0:
            x = denoised
            continue
        ds = s_next - s
        x = x + 2 * _d(x, s, denoised) * ds + math.sqrt(float(-2 * s * ds)) * noise(x)
    return x


@register_sampler("euler", stochastic=False, description="Euler on the probability-flow ODE")
def sample_euler(denoiser, x, sigmas, *, noise=None, callback=None):
    """Euler method on dx/dsigma = (x - D)/sigma (Karras et al. 2022, Alg. 1 without the corrector)."""
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, _sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        x = x + _d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@register_sampler(
    "heun",
    stochastic=False,
    description="Heun's 2nd-order method on the probability-flow ODE, optional churn (EDM)",
)
def sample_heun(
    denoiser,
    x,
    sigmas,
    *,
    noise=None,
    callback=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
):
    """Karras et al. (2022) Alg. 2; ``s_churn = 0`` is the deterministic Alg. 1."""
    n = len(sigmas) - 1
    for i in range(n):
        s = sigmas[i]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + noise(x) * s_noise * torch.sqrt(s_hat**2 - s**2)
        denoised = denoiser(x, _sigma_batch(s_hat, x))
        if callback is not None:
            callback(i, x, denoised)
        d = _d(x, s_hat, denoised)
        dt = sigmas[i + 1] - s_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x2 = x + d * dt
        d2 = _d(x2, sigmas[i + 1], denoiser(x2, _sigma_batch(sigmas[i + 1], x2)))
        x = x + (d + d2) / 2 * dt
    return x
