"""Adaptive Runge–Kutta on the probability-flow ODE.

The ODE is integrated in u = log sigma, dx/du = x - D(x, e^u), which is smooth at every noise level
(in sigma it is stiff near sigma_max). Dormand & Prince (1980) RK5(4)7M: a 5th-order step, the
embedded 4th-order one for the error estimate, first-same-as-last so an accepted step costs 6
evaluations. The step is controlled on the RMS over the whole batch of
err / (atol + rtol max(|x|, |x'|)) (Hairer, Nørsett & Wanner, II.4). With a grid ending in 0 the
final D comes from the last evaluation for free.
"""

from __future__ import annotations

import math

import torch

from polydiff.dopri import A as _A
from polydiff.dopri import C as _C
from polydiff.dopri import E as _E
from polydiff.sampling.registry import register_sampler


@register_sampler(
    "rk45",
    stochastic=False,
    description="Adaptive Dormand–Prince RK5(4) on the probability-flow ODE in log sigma",
    default_schedule="karras",
    nfe="adaptive: 6 per accepted or rejected step + 1 (reported by run_sampler)",
)
def sample_rk45(
    denoiser,
    x,
    sigmas,
    *,
    noise=None,
    callback=None,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    max_steps: int = 100_000,
):
    """Integrate from sigmas[0] to the last nonzero level; ``len(sigmas)`` only sets the first step."""
    sig = [v for v in sigmas.tolist() if v > 0]
    u, u_end = math.log(sig[0]), math.log(sig[-1])
    span = u_end - u
    h = span / max(len(sig) - 1, 1)

    def f(x, u):
        d = denoiser(x, x.new_full((x.shape[0],), math.exp(u)))
        return x - d, d

    k1, denoised = f(x, u)
    step = 0
    while span != 0 and (u_end - u) / span > 1e-12:
        if step >= max_steps:
            raise RuntimeError(f"rk45 took more than {max_steps} steps; loosen rtol/atol")
        h = max(h, u_end - u) if span < 0 else min(h, u_end - u)
        ks = [k1]
        for a_row, c in zip(_A[1:], _C[1:], strict=True):
            xi = x
            for a, k in zip(a_row, ks, strict=True):
                if a != 0.0:
                    xi = xi + (h * a) * k
            if c == 1.0 and len(ks) == 6:  # the 7th stage: x_new itself (FSAL)
                x_new = xi
            ki, di = f(xi, u + c * h)
            ks.append(ki)
        err = sum((h * e) * k for e, k in zip(_E, ks, strict=True) if e != 0.0)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        ratio = float((err / scale).pow(2).mean().sqrt())
        step += 1
        if ratio <= 1.0:
            u, x, k1, denoised = u + h, x_new, ks[-1], di
            if callback is not None:
                callback(step, x, denoised)
        h = h * min(5.0, max(0.2, 0.9 * (ratio + 1e-16) ** -0.2))
    if sigmas[-1] == 0:
        x = denoised  # D(x, sigma_last) from the last (FSAL) evaluation
    return x
