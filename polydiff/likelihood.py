"""Log-likelihood and bits/dim through the probability-flow ODE (Song et al. 2021, Sec. 4.3).

In the unscaled view x = x_0 + sigma eps the probability-flow ODE of every SDE of the family is
dx/dsigma = (x - D(x, sigma)) / sigma. We integrate it from sigma_min up to sigma_max together with
the instantaneous change of variables

    d log p(x(sigma)) / dsigma = -div_x (x - D) / sigma = -(n - tr dD/dx) / sigma

(n = number of valid entries), so that
log p_{sigma_min}(x) = log p_prior(x(sigma_max)) + int (n - tr dD/dx) / sigma dsigma.
The trace is Hutchinson's estimator tr J ≈ mean_k z_k^T J z_k with z_k fixed for the whole solve
(Rademacher or Gaussian probes, drawn on the device of ``x``; vector-Jacobian products by
torch.autograd), or the exact trace (``estimator="exact"``: one vector-Jacobian product per entry —
for small states and tests). The solvers are private to this module: a fixed-step Heun on EDM's
sigma grid (uniform in sigma^(1/7)) and an adaptive Dormand–Prince 5(4); the error control of the
latter covers the running log-density too. The state is computed in float64 when ``x`` is float64,
else float32.

Noise spaces. When the data live in a linear subspace (a modality's ``noise_space``: zero centre
of mass, symmetric adjacency), pass it as ``noise_space``: the denoiser's output and the trace
probes are projected onto it, n becomes its dimension (3(N - 1) for a zero-mean cloud, N(N - 1)/2
for a hollow symmetric matrix) and the prior is the Gaussian of the subspace, so ``logp`` is the
density with respect to the subspace's own volume. Without it the density is over all valid
entries (and is -inf-like wrong for data confined to a subspace).

Coordinates. The data point ``x`` is read as the *scaled* state x_{t_min} of the SDE (Song et al.
evaluate data at t = t_min without perturbing it), so the result is the model's density of x_{t_min}
at ``x``. The ODE runs on the unscaled state x / s(t_min); since x_t = s x with s = s(t_min) a
constant, p_scaled(x) = p_unscaled(x / s) / s^n exactly, and ``logp`` includes -n log s(t_min)
(zero for VE and EDM, where s = 1; tiny but exact for VP and sub-VP). The prior term is the SDE's
``prior_logp`` at x(sigma_max) in unscaled coordinates, which for VP / sub-VP is N(0, I) on the
scaled x_T re-expressed in unscaled coordinates (N(0, 1/s(T)^2 I)), including its Jacobian.

bits/dim = -logp / (n ln 2) + ``dequantization_offset``. For data quantised to K levels over a
range of width W (e.g. 8-bit images: K = 256, W = 1 for [0, 1] data -> 8; W = 2 for [-1, 1] -> 7)
the discrete-data bits/dim of dequantised data are -logp/(n ln 2) + log2(K / W): pass that offset
(uniformly dequantise ``x`` first). The default 0 reports the continuous density's bits/dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.dopri import A as _A
from polydiff.dopri import C as _C
from polydiff.dopri import E as _E
from polydiff.sde import SDE, _t
from polydiff.state import Mask, State, pack, pack_mask, unpack

METHODS = ("rk45", "heun")
ESTIMATORS = ("rademacher", "gaussian", "exact")


@dataclass
class LikelihoodResult:
    """``logp`` (B,) in nats, ``bpd`` (B,), ``nfe`` denoiser evaluations; the parts of ``logp``:
    ``prior_logp`` (B,), ``delta_logp`` (B,) the divergence integral, ``log_scale`` (B,) the
    -n log s(t_min) term, ``dims`` (B,) the number n of valid entries, ``latent`` the unscaled state
    at sigma_max."""

    logp: Tensor
    bpd: Tensor
    nfe: int
    prior_logp: Tensor | None = None
    delta_logp: Tensor | None = None
    log_scale: Tensor | None = None
    dims: Tensor | None = None
    latent: State | None = None


def log_likelihood(
    denoiser: Callable[..., State],
    sde: SDE,
    x: State,
    *,
    mask: Mask = None,
    cond: Mapping[str, Any] | None = None,
    steps: int = 64,
    method: str = "rk45",
    estimator: str = "rademacher",
    n_probes: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    dequantization_offset: float = 0.0,
    max_steps: int = 10_000,
    noise_space: Any = None,
) -> LikelihoodResult:
    """Log-density of ``x`` (a tensor of any rank or a mapping of tensors, batch first).

    ``denoiser(x, sigma, **cond)`` must be differentiable in ``x``; ``sigma`` is ``(B,)``.
    ``method``: ``"rk45"`` (adaptive Dormand–Prince 5(4) with ``rtol``/``atol``, at most
    ``max_steps`` accepted steps) or ``"heun"`` (``steps`` fixed steps on EDM's grid, uniform in
    sigma^(1/7), 2 evaluations each). ``estimator``: ``"rademacher"``, ``"gaussian"`` (``n_probes`` probes drawn
    once with ``generator`` on the device of ``x``) or ``"exact"``. Padded entries (``mask == 0``)
    are held fixed and excluded from the density, the trace and the dimension count.
    ``noise_space``: a :class:`polydiff.noise_space.NoiseSpace` the data live in (module docstring).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; available: {', '.join(ESTIMATORS)}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    cond = dict(cond or {})

    flat, layout = pack(x)
    if flat.dtype not in (torch.float32, torch.float64):  # integers, half precision
        flat = flat.to(torch.float32)
    b, n = flat.shape
    device, dtype = flat.device, flat.dtype
    m = pack_mask(mask, x)
    if m is not None:
        m = (m > 0).to(dtype)
    if noise_space is not None:
        dims = noise_space.dims(x, mask).to(device=device, dtype=dtype)
    else:
        dims = m.sum(1) if m is not None else torch.full((b,), float(n), device=device, dtype=dtype)

    def project(flat_state: Tensor) -> Tensor:
        if noise_space is None:
            return flat_state
        out, _ = pack(noise_space.project(unpack(flat_state, layout), mask))
        return out.to(flat_state.dtype)

    s0 = float(sde.scale(_t(sde.t_min)))
    y0 = flat / s0
    if m is not None:
        y0 = y0 * m

    probes = None
    if estimator != "exact":
        shape = (n_probes, b, n)
        if estimator == "rademacher":
            probes = (
                torch.randint(0, 2, shape, generator=generator, device=device).to(dtype) * 2 - 1
            )
        else:
            probes = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        if m is not None:
            probes = probes * m
        probes = torch.stack([project(p) for p in probes])

    nfe = 0

    def rhs(s: float, state: Tensor) -> Tensor:
        """d/dsigma of (x, int div) at sigma = s."""
        nonlocal nfe
        nfe += 1
        y = state[:, :n]
        sigma = torch.full((b,), s, device=device, dtype=dtype)
        with torch.enable_grad():
            yg = y.detach().requires_grad_(True)
            d, _ = pack(denoiser(unpack(yg, layout), sigma, **cond))
            d = project(d.to(dtype))
            if m is not None:
                d = d * m
            trace = _trace(d, yg, probes, project)
        dx = y - d.detach()
        if m is not None:
            dx = dx * m
        return torch.cat([dx, (dims - trace)[:, None]], 1) / s

    start = torch.cat([y0, torch.zeros(b, 1, device=device, dtype=dtype)], 1)
    with torch.no_grad():
        if method == "heun":
            end = _heun(rhs, start, _karras_grid(sde.sigma_min, sde.sigma_max, steps))
        else:
            end = _dopri5(rhs, start, sde.sigma_min, sde.sigma_max, rtol, atol, max_steps)

    y1, delta = end[:, :n], end[:, n]
    prior = sde.prior_logp(y1, m, dims=dims if noise_space is not None else None)
    log_scale = -dims * math.log(s0)
    logp = prior + delta + log_scale
    bpd = -logp / (dims.clamp_min(1) * math.log(2)) + dequantization_offset
    return LikelihoodResult(
        logp=logp,
        bpd=bpd,
        nfe=nfe,
        prior_logp=prior,
        delta_logp=delta,
        log_scale=log_scale,
        dims=dims,
        latent=unpack(y1, layout),
    )


def _trace(
    d: Tensor, y: Tensor, probes: Tensor | None, project: Callable[[Tensor], Tensor]
) -> Tensor:
    """tr(P dd/dy P) per sample (P = ``project``, the noise space's orthogonal projection):
    Hutchinson over ``probes`` (K, B, n, already projected), or exact when ``probes`` is None —
    sum_j (P e_j)^T J (P e_j), one vector-Jacobian product per entry."""
    b, n = y.shape
    if not d.requires_grad:  # d does not depend on y
        return torch.zeros(b, device=y.device, dtype=y.dtype)

    def vjp(v: Tensor, keep: bool) -> Tensor:
        (g,) = torch.autograd.grad(d, y, v, retain_graph=keep, allow_unused=True)
        return torch.zeros_like(y) if g is None else g

    total = torch.zeros(b, device=y.device, dtype=y.dtype)
    if probes is None:
        eye = torch.zeros_like(y)
        for j in range(n):
            eye.zero_()
            eye[:, j] = 1
            v = project(eye)
            total = total + (vjp(v, j < n - 1) * v).sum(1)
        return total
    k = probes.shape[0]
    for i in range(k):
        z = probes[i]
        total = total + (vjp(z, i < k - 1) * z).sum(1)
    return total / k


def _karras_grid(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> list[float]:
    """``steps + 1`` levels from sigma_min up to sigma_max, uniform in sigma^(1/rho) (EDM Eq. 5)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(lo + i / steps * (hi - lo)) ** rho for i in range(steps + 1)]


def _heun(f: Callable[[float, Tensor], Tensor], y: Tensor, grid: list[float]) -> Tensor:
    """Heun's method (explicit trapezoid) over the points of ``grid``."""
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        h = b - a
        k1 = f(a, y)
        k2 = f(b, y + h * k1)
        y = y + 0.5 * h * (k1 + k2)
    return y




def _error_norm(err: Tensor, y: Tensor, y_new: Tensor, rtol: float, atol: float) -> float:
    """max over the batch of the RMS of err / (atol + rtol max(|y|, |y_new|))."""
    tol = atol + rtol * torch.maximum(y.abs(), y_new.abs())
    return float((err / tol).pow(2).mean(1).sqrt().max())


def _dopri5(
    f: Callable[[float, Tensor], Tensor],
    y: Tensor,
    u0: float,
    u1: float,
    rtol: float,
    atol: float,
    max_steps: int,
) -> Tensor:
    """Adaptive Dormand–Prince 5(4) for dy/du = f(u, y) from u0 to u1 > u0 (local extrapolation,
    first-same-as-last, standard step-size control with safety 0.9 and factors in [0.2, 5])."""
    span = u1 - u0
    k1 = f(u0, y)
    # initial step: Hairer, Nørsett & Wanner (1993), II.4
    scale = atol + rtol * y.abs()
    d0 = float((y / scale).pow(2).mean().sqrt())
    d1 = float((k1 / scale).pow(2).mean().sqrt())
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    k_probe = f(u0 + h0, y + h0 * k1)
    d2 = float(((k_probe - k1) / scale).pow(2).mean().sqrt()) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** 0.2
    h = min(100 * h0, h1, span)

    u, accepted = u0, 0
    while u1 - u > 1e-12 * max(1.0, abs(u1)):
        if accepted >= max_steps:
            raise RuntimeError(f"rk45 did not reach the end in {max_steps} steps (at u = {u:.4g})")
        h = min(h, u1 - u)
        ks = [k1]
        for i in range(1, 7):
            yi = y + h * sum(a * k for a, k in zip(_A[i], ks, strict=False) if a != 0.0)
            ks.append(f(u + _C[i] * h, yi))
            if i == 6:
                y_new = yi  # row 7 of A is b5: the stage-7 input is the 5th-order solution
        err = h * sum(e * k for e, k in zip(_E, ks, strict=True) if e != 0.0)
        norm = _error_norm(err, y, y_new, rtol, atol)
        if norm <= 1.0:
            u, y, k1 = u + h, y_new, ks[6]
            accepted += 1
            factor = 5.0 if norm == 0 else min(5.0, max(0.2, 0.9 * norm**-0.2))
        else:
            factor = max(0.2, 0.9 * norm**-0.2)
        h = h * factor
        if h < 1e-12 * max(1.0, abs(span)):
            raise RuntimeError(f"rk45 step size underflow at u = {u:.4g}")
    return y
