"""Multistep DPM-Solver++ in data prediction (Lu et al. 2022, arXiv:2211.01095).

With lambda = -log sigma the probability-flow ODE in the unscaled view is dx/dlambda = D - x, solved
exactly over a step h = lambda' - lambda as x' = e^-h x + int_0^h e^-(h-u) D(lambda + u) du.
Multistep solvers replace D by a polynomial through the last denoiser outputs; the weights J_k(h)
of its Taylor terms are :func:`~polydiff.sampling.common.phi`. Steps warm up from first order
(DDIM) and, with ``lower_order_final``, drop order on the last steps so the order never exceeds the
steps left (default: on when the grid has fewer than 10 steps, the rule of Lu et al.'s code, which
stabilises very short runs). The step to sigma = 0 returns D.
"""

from __future__ import annotations

import math

from polydiff.sampling.common import (
    multistep_order,
    noisy_steps,
    phi,
    resolve_lower_order_final,
    sigma_batch,
)
from polydiff.sampling.registry import register_sampler


# Default grid and final steps chosen on benchmarks/analytic.py --hard: on the Karras grid with
# second-order steps to the end it is k-diffusion's sample_dpmpp_2m step for step, so it never
# loses to it; the log-SNR grid won on close isotropic modes (10 NFE: 0.037 vs 0.084) but lost on
# separated sharp ones (5 NFE: 0.55 vs 0.36), and lower-order final steps lost 2x at 5 NFE on
# close modes. `polydiff schedule` tunes past both.
@register_sampler(
    "dpmpp_2m",
    stochastic=False,
    description="DPM-Solver++(2M), multistep 2nd order in data prediction (Lu et al. 2022, Alg. 2)",
    default_schedule="karras",
    nfe="steps",
)
def sample_dpmpp_2m(denoiser, x, sigmas, *, noise=None, callback=None, lower_order_final=False):
    """Lu et al. (2022) Alg. 2: D_hat = (1 + 1/2r) D_i - 1/2r D_{i-1}, x' = (s'/s) x + (1 - s'/s) D_hat."""
    sig = sigmas.tolist()
    n = noisy_steps(sig)
    lof = resolve_lower_order_final(lower_order_final, sig)
    old, h_old = None, None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        if s_next == 0:
            x = denoised
            continue
        h = math.log(s / s_next)
        b = -math.expm1(-h)  # 1 - s'/s
        c = h / (2 * h_old) if old is not None and multistep_order(i, n, 2, lof) == 2 else 0.0
        # x' = (s'/s) x + b ((1 + c) D_i - c D_{i-1}), c = 1/2r with r = h_old / h (fused, in place
        # on the fresh tensor)
        x = (x * (s_next / s)).add_(denoised, alpha=b * (1 + c))
        if c:
            x.add_(old, alpha=-b * c)
        old, h_old = denoised, h
    return x


# Second-derivative weight: Lu et al.'s reference code (dpm_solver, and diffusers and k-diffusion
# after it) weighs the D'' term by half its Taylor coefficient, J_2 p''/2 instead of J_2 p''. That
# makes the method second order asymptotically (tests/test_samplers_convergence.py measures it)
# but steadier at coarse steps where the extrapolated D'' is poor: on benchmarks/analytic.py
# --hard the Taylor weights lost to k-diffusion's dpmpp_3m by up to 4x at 15-30 NFE on the
# separated anisotropic target on every grid tried (Karras rho 7-30, log-SNR), while the
# reference weights on the Karras grid tie it at >= 10 steps and beat it below (lower-order final
# steps). So the default is the reference weights on Karras; ``taylor=True`` gives the exact
# third-order method (the tuner's fine reference solution uses it).
@register_sampler(
    "dpmpp_3m",
    stochastic=False,
    description="DPM-Solver++(3M), multistep 3rd order in data prediction (Lu et al. 2022)",
    default_schedule="karras",
    nfe="steps",
)
def sample_dpmpp_3m(
    denoiser, x, sigmas, *, noise=None, callback=None, lower_order_final=None, taylor: bool = False
):
    """x' = e^-h x + J_0 D + J_1 D' + w J_2 D'', D' and D'' from the quadratic through the last 3
    outputs; w = 1/2 (the reference implementations' weight) or 1 with ``taylor``."""
    sig = sigmas.tolist()
    n = noisy_steps(sig)
    # a run of two noisy steps has no multistep phase to stabilise: dropping the order of its last
    # step would make it DDIM (which lost 1.4-1.6x to k-diffusion at 3 NFE on close modes)
    lof = resolve_lower_order_final(lower_order_final, sig) if n > 2 or lower_order_final else False
    w2 = 2.0 if taylor else 1.0  # p'' = 2 f012
    hist: list[tuple[float, object]] = []  # (lambda, D), newest last
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        if s_next == 0:
            x = denoised
            continue
        lam = -math.log(s)
        hist = [*hist[-2:], (lam, denoised)]
        h = math.log(s / s_next)
        order = min(multistep_order(i, n, 3, lof), len(hist))
        x = math.exp(-h) * x + phi(h, 0) * denoised
        if order >= 2:
            (l1, d1_), (l0, d0) = hist[-2], hist[-1]
            f01 = (d0 - d1_) / (l0 - l1)  # first divided difference
            if order == 2:
                x = x + phi(h, 1) * f01
            else:
                l2, d2_ = hist[-3]
                f12 = (d1_ - d2_) / (l1 - l2)
                f012 = (f01 - f12) / (l0 - l2)
                # p'(lambda_i) = f01 + (l0 - l1) f012
                x = x + phi(h, 1) * (f01 + (l0 - l1) * f012) + (w2 * phi(h, 2)) * f012
    return x


@register_sampler(
    "dpmpp_2m_sde",
    stochastic=True,
    description="DPM-Solver++(2M) SDE, multistep 2nd order on the reverse SDE (Lu et al. 2022)",
    default_schedule="logsnr",
    nfe="steps",
)
def sample_dpmpp_2m_sde(
    denoiser, x, sigmas, *, noise, callback=None, eta: float = 1.0, lower_order_final=None
):
    """Exact integration of dx = (1+eta)(D - x) dlambda + sqrt(2 eta) sigma dW with D linear in lambda.

    x' = e^-k x + (1 - e^-k) D + (h J_1(k) / k) D' + s' sqrt(1 - e^(-2 eta h)) z, with k = (1 + eta) h;
    eta = 1 is the reverse SDE (first order: the DDPM posterior step), eta = 0 the ODE.
    """
    if eta < 0:
        raise ValueError(f"dpmpp_2m_sde needs eta >= 0, got {eta}")
    sig = sigmas.tolist()
    n = noisy_steps(sig)
    lof = resolve_lower_order_final(lower_order_final, sig)
    old, h_old = None, None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, sigma_batch(sigmas[i], x))
        if callback is not None:
            callback(i, x, denoised)
        if s_next == 0:
            x = denoised
            continue
        h = math.log(s / s_next)
        k = (1 + eta) * h
        x = math.exp(-k) * x + (-math.expm1(-k)) * denoised
        if old is not None and multistep_order(i, n, 2, lof) == 2:
            x = x + (h * phi(k, 1) / k / h_old) * (denoised - old)
        if eta > 0:
            x = x + s_next * math.sqrt(-math.expm1(-2 * eta * h)) * noise(x)
        old, h_old = denoised, h
    return x
