"""First- and second-order solvers in the sigma view: Euler, Heun, Euler–Maruyama."""

from __future__ import annotations

import math

from polydiff.sampling.common import sigma_batch, to_d
from polydiff.sampling.registry import register_sampler


@register_sampler(
    "euler_maruyama",
    stochastic=True,
    description="Euler–Maruyama on the reverse-time SDE (Song et al. 2021)",
    nfe="steps",
)
def sample_euler_maruyama(denoiser, x, sigmas, *, noise, callback=None):
    """Reverse SDE dx = 2 (x - D)/sigma dsigma + sqrt(-2 sigma dsigma) dw; the step to sigma = 0 returns D."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        if s_next == 0:
            x = denoised
            continue
        ds = s_next - s
        x = x + 2 * to_d(x, s, denoised) * ds + math.sqrt(-2 * s * ds) * noise(x)
    return x


@register_sampler(
    "euler",
    stochastic=False,
    description="Euler on the probability-flow ODE (Karras et al. 2022 Alg. 1, first order)",
    nfe="steps",
)
def sample_euler(denoiser, x, sigmas, *, noise=None, callback=None):
    """Euler method on dx/dsigma = (x - D)/sigma (Karras et al. 2022, Alg. 1 without the corrector)."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        x = x + to_d(x, sig[i], denoised) * (sig[i + 1] - sig[i])
    return x


@register_sampler(
    "heun",
    stochastic=False,
    description="Heun's 2nd-order method on the probability-flow ODE, optional churn (EDM)",
    nfe="2 steps - 1 (2 steps when the grid does not end in 0)",
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
    sig = sigmas.tolist()
    n = len(sig) - 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + noise(x) * (s_noise * math.sqrt(s_hat**2 - s**2))
        denoised = denoiser(x, sigma_batch(sigmas[i] * (1 + gamma), x))
        if callback is not None:
            callback(i, x, denoised)
        d = to_d(x, s_hat, denoised)
        x_next = x + d * (s_next - s_hat)
        if s_next == 0:
            x = x_next
            continue
        d_next = to_d(x_next, s_next, denoiser(x_next, sigma_batch(sigmas[i + 1], x_next)))
        x = x + (d + d_next) * ((s_next - s_hat) / 2)
    return x
