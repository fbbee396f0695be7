"""UniPC: unified predictor–corrector for the probability-flow ODE (Zhao et al. 2023, arXiv:2302.04867).

Data prediction in lambda = -log sigma, where the exact step is x' = e^-h x + int_0^h e^-(h-u) D du.
With the last outputs D_k at lambda + r_k h (r_k < 0) and the differences Dk = (D_k - D) / r_k,
UniP-p sets x' = e^-h x + J_0 D + B(h) sum_k rho_k Dk, the rho solving the Vandermonde system
sum_k rho_k r_k^(m-1) = m! J_m(h) / (h^m B(h)), m = 1..p-1 (Taylor terms matched to order p).
UniC-p repeats the update with the new output D(x', sigma') included (r = 1), which the next step
needs anyway, raising the order by one for no extra evaluation. B(h) = 1 - e^-h is the "bh2"
variant, B(h) = h "bh1". The last step gets no corrector (nothing evaluates its result).
"""

from __future__ import annotations

import math

import numpy as np

from polydiff.sampling.common import (
    multistep_order,
    noisy_steps,
    phi,
    resolve_lower_order_final,
    sigma_batch,
)
from polydiff.sampling.registry import register_sampler


def _rhos(rs: list[float], h: float, big_b: float) -> list[float]:
    """Solve sum_k rho_k r_k^(m-1) = m! J_m(h) / (h^m B) for m = 1..len(rs)."""
    m = len(rs)
    rhs = [math.factorial(j) * phi(h, j) / (h**j * big_b) for j in range(1, m + 1)]
    if m == 1:
        return rhs
    mat = np.array([[r ** (j - 1) for r in rs] for j in range(1, m + 1)], dtype=np.float64)
    return np.linalg.solve(mat, np.array(rhs, dtype=np.float64)).tolist()


@register_sampler(
    "unipc",
    stochastic=False,
    description="UniPC, unified predictor–corrector, bh2 / data prediction (Zhao et al. 2023)",
    default_schedule="logsnr",
    nfe="steps",
)
def sample_unipc(
    denoiser,
    x,
    sigmas,
    *,
    noise=None,
    callback=None,
    order: int = 3,
    variant: str = "bh2",
    lower_order_final=None,
    corrector: bool = True,
):
    """UniP-p predictor with the UniC-p corrector (Zhao et al. 2023, Alg. 2 and 3, multistep)."""
    if order not in (1, 2, 3):
        raise ValueError(f"unipc supports order 1, 2 or 3, got {order}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"unknown unipc variant {variant!r}: use 'bh1' or 'bh2'")
    sig = sigmas.tolist()
    n = noisy_steps(sig)
    lof = resolve_lower_order_final(lower_order_final, sig)
    hist: list[tuple[float, object]] = []  # (lambda, D) of earlier levels, newest last
    denoised = denoiser(x, sigma_batch(sigmas[0], x))
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        if callback is not None:
            callback(i, x, denoised)
        if s_next == 0:
            x = denoised
            break
        lam, h = -math.log(s), math.log(s / s_next)
        p = min(multistep_order(i, n, order, lof), len(hist) + 1)
        used = hist[len(hist) - (p - 1) :] if p > 1 else []
        rs = [(lk - lam) / h for lk, _ in used]
        diffs = [(dk - denoised) / r for (_, dk), r in zip(used, rs, strict=True)]
        big_b = -math.expm1(-h) if variant == "bh2" else h
        base = math.exp(-h) * x + phi(h, 0) * denoised
        x_new = base  # UniP-p
        for rho, dk in zip(_rhos(rs, h, big_b) if rs else [], diffs, strict=True):
            x_new = x_new + (big_b * rho) * dk
        hist = [*hist[-(order - 1) :], (lam, denoised)] if order > 1 else []
        if i + 1 == len(sig) - 1:  # the grid ends here: no evaluation, no corrector
            x = x_new
            break
        denoised_new = denoiser(x_new, sigma_batch(sigmas[i + 1], x_new))
        if corrector:  # UniC-p, with the new output at r = 1
            x = base
            rho_c = _rhos([*rs, 1.0], h, big_b)
            for rho, dk in zip(rho_c, [*diffs, denoised_new - denoised], strict=True):
                x = x + (big_b * rho) * dk
        else:
            x = x_new
        denoised = denoised_new
    return x
