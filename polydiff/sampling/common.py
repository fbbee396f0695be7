"""Small helpers shared by the samplers: stateless math on Python floats and packed tensors.

Step coefficients are computed once per step in Python floats (double precision, no device
synchronisation); only the state update touches tensors.
"""

from __future__ import annotations

import math

from torch import Tensor


def sigma_batch(sigma: Tensor, x: Tensor) -> Tensor:
    """A 0-dim noise level broadcast to the batch: ``(B,)`` in the dtype of ``x``."""
    return sigma.to(x.dtype).expand(x.shape[0])


def to_d(x: Tensor, sigma: float | Tensor, denoised: Tensor) -> Tensor:
    """dx/dsigma of the probability-flow ODE: (x - D(x, sigma)) / sigma (Karras et al. 2022 Eq. 4)."""
    return (x - denoised) / sigma


def phi(h: float, k: int) -> float:
    """J_k(h) = int_0^h exp(-(h - u)) u^k / k! du, the exponential-integrator weights.

    The solution of dx/dlambda = D - x over a step h in lambda = -log sigma is
    x(h) = e^-h x(0) + sum_k J_k(h) D^(k)(0) for D expanded in a Taylor series (Lu et al. 2022).
    Closed form J_0 = 1 - e^-h, J_k = h^k / k! - J_{k-1}; a series for small h avoids cancellation.
    """
    if math.isinf(h):
        return 1.0 if k == 0 else math.inf
    if h < 0.5:
        # J_k = sum_m (-1)^m h^(k+1+m) / (k+1+m)!
        term = h ** (k + 1) / math.factorial(k + 1)
        total, m = 0.0, 0
        while abs(term) > 1e-18 * max(abs(total), 1e-300) and m < 40:
            total += term
            m += 1
            term *= -h / (k + 1 + m)
        return total
    j = -math.expm1(-h)
    for i in range(1, k + 1):
        j = h**i / math.factorial(i) - j
    return j


def noisy_steps(sig: list[float]) -> int:
    """Steps between nonzero levels of the grid ``sig``; the step to 0, if any, is not counted
    because it only returns D (it needs no history and is always first order)."""
    return len(sig) - 1 - (1 if sig[-1] == 0 else 0)


def resolve_lower_order_final(lower_order_final: bool | None, sig: list[float]) -> bool:
    """Lower-order final steps for multistep solvers: as given, else on when the grid has fewer
    than 10 steps (the rule of Lu et al.'s code, which stabilises very short runs)."""
    return len(sig) - 1 < 10 if lower_order_final is None else bool(lower_order_final)


def multistep_order(i: int, n: int, order: int, lower_order_final: bool) -> int:
    """The order of step ``i`` of ``n`` for a multistep method: warm up from 1, and with
    ``lower_order_final`` let the last steps drop order so every step has enough history."""
    o = min(order, i + 1)
    if lower_order_final:
        o = min(o, n - i)
    return max(o, 1)
