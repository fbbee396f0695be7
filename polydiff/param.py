"""Network parameterisations, all wrapped into one denoiser D(x, sigma, **cond) ~ E[x_0 | x].

``x`` is the unscaled noisy state x_0 + sigma * eps. The wrapped network sees
``net(c_in * x, c_noise, **cond)`` and its raw output F becomes D = c_skip * x + c_out * F
(Karras et al. 2022, Table 1 and Eq. 7). With sd = ``sigma_data``, the target F_* of each
parameterisation (the F for which D is the exact posterior mean E[x_0 | x]) and its coefficients:

- ``edm``:   F_* = (x_0 - c_skip x) / c_out;  c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2)
- ``eps``:   F_* = eps = (x - x_0)/s;         c_skip = 1, c_out = -s
- ``x0``:    F_* = x_0;                       c_skip = 0, c_out = 1
- ``v``:     F_* = v = (sd^2 eps - s x_0) / (sd sqrt(s^2+sd^2));
             c_skip = sd^2/(s^2+sd^2), c_out = -s sd/sqrt(s^2+sd^2)
- ``score``: F_* = s * grad_x log p(x; s) = (x_0 - x)/s;  c_skip = 1, c_out = s

with s = sigma and c_in = 1/sqrt(s^2 + sd^2) throughout (for sd = 1 that is VP's scale s(t), so a
VP network sees x_t). ``v`` is the v-prediction of Salimans & Ho (2022), v = alpha eps - sigma_t x_0
with alpha = sd/sqrt(s^2+sd^2), sigma_t = s/sqrt(s^2+sd^2), written for data normalised by sd:
x_0/sd, noise level s/sd. With sd = 1 it is exactly their v on VP's x_t = alpha x_0 + sigma_t eps;
for any sd, EDM's F_* equals -v, so ``v`` is EDM's preconditioning with the sign of F flipped.

Noise levels: ``sigma`` is a scalar, a ``(B,)`` tensor (one level per sample), a tensor of the
leading dimensions of the state (per-element levels, e.g. ``(B, N)`` — one per node — for a state
``(B, N, F)``; broadcast with trailing singleton dimensions like a mask), or a mapping with one such
tensor per key of a mapping state. The coefficients are taken elementwise, and the network gets the
levels as given: ``c_noise = sde.c_noise(sigma)`` of the same shape (a mapping for a mapping).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polydiff.sde import SDE
from polydiff.state import State, append_dims, batch_size, leaves

PARAMETERISATIONS = ("edm", "eps", "x0", "v", "score")

Sigma = Tensor | float | Mapping[str, Tensor]


def coefficients(
    sigma: Tensor, parameterisation: str, sigma_data: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in), elementwise for noise levels ``sigma`` of any shape."""
    sd = float(sigma_data)
    norm = torch.sqrt(sigma**2 + sd**2)
    c_in = 1 / norm
    if parameterisation in ("edm", "v"):
        c_skip = sd**2 / norm**2
        c_out = sigma * sd / norm  # EDM Table 1
        if parameterisation == "v":
            c_out = -c_out  # v = -F_edm
    elif parameterisation == "eps":
        c_skip, c_out = torch.ones_like(sigma), -sigma
    elif parameterisation == "x0":
        c_skip, c_out = torch.zeros_like(sigma), torch.ones_like(sigma)
    elif parameterisation == "score":
        c_skip, c_out = torch.ones_like(sigma), sigma
    else:
        raise ValueError(
            f"unknown parameterisation {parameterisation!r}; available: {', '.join(PARAMETERISATIONS)}"
        )
    return c_skip, c_out, c_in


def _compute_dtype(x: State) -> torch.dtype:
    return torch.float64 if leaves(x)[0].dtype == torch.float64 else torch.float32


def normalise_sigma(sigma: Sigma, x: State, dtype: torch.dtype | None = None) -> Sigma:
    """``sigma`` on the device of ``x``; a scalar or one-element level expanded to ``(B,)``."""
    ref = leaves(x)[0]
    dtype = dtype or _compute_dtype(x)
    b = batch_size(x)

    def one(s: Tensor | float) -> Tensor:
        s = torch.as_tensor(s).to(device=ref.device, dtype=dtype)
        if s.ndim == 0 or (s.ndim == 1 and s.numel() == 1):
            s = s.reshape(1).expand(b)
        return s

    if isinstance(sigma, Mapping):
        if not isinstance(x, Mapping) or set(sigma) != set(x):
            raise ValueError("a mapping of noise levels needs a mapping state with the same keys")
        return {k: one(sigma[k]) for k in x}
    return one(sigma)


def broadcast_sigma(sigma: Sigma, x: State) -> State:
    """Noise levels shaped to broadcast against each tensor of ``x`` (trailing singleton dims).

    Returns a state of the structure of ``x``; a (non-mapping) ``sigma`` is shared by every key.
    """
    sigma = normalise_sigma(sigma, x)

    def fit(s: Tensor, v: Tensor) -> Tensor:
        if s.ndim > v.ndim or tuple(s.shape) != tuple(v.shape[: s.ndim]):
            raise ValueError(
                f"noise levels of shape {tuple(s.shape)} do not match the leading dimensions of "
                f"a state tensor of shape {tuple(v.shape)}"
            )
        return append_dims(s, v.ndim)

    if isinstance(x, Mapping):
        return {k: fit(sigma[k] if isinstance(sigma, Mapping) else sigma, v) for k, v in x.items()}
    return fit(sigma, x)


class Denoiser(nn.Module):
    """Wrap ``net(x_in, c_noise, **cond)`` into D(x, sigma, **cond) -> estimate of x_0.

    ``x``: a tensor ``(B, ...)`` or a mapping of them (the unscaled noisy state).
    ``sigma``: see the module docstring — per sample ``(B,)``, per element, or per key.
    The network receives ``c_in * x`` (same structure as ``x``) and ``c_noise = sde.c_noise(sigma)``
    with ``sigma`` as given (a scalar becomes ``(B,)``), and returns F with the structure of ``x``.
    Coefficients are computed in float64 for a float64 state, else float32.
    """

    def __init__(
        self, net: nn.Module, sde: SDE, parameterisation: str = "edm", sigma_data: float = 0.5
    ):
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(
                f"unknown parameterisation {parameterisation!r}; "
                f"available: {', '.join(PARAMETERISATIONS)}"
            )
        self.net = net
        self.sde = sde
        self.parameterisation = parameterisation
        self.sigma_data = float(sigma_data)

    def forward(self, x: State, sigma: Sigma, **cond: Tensor) -> State:
        dtype = _compute_dtype(x)
        sigma = normalise_sigma(sigma, x, dtype)
        if isinstance(sigma, Mapping):
            c_noise = {k: self.sde.c_noise(s).to(dtype) for k, s in sigma.items()}
        else:
            c_noise = self.sde.c_noise(sigma).to(dtype)
        per_leaf = broadcast_sigma(sigma, x)
        coef = (
            {
                k: coefficients(s, self.parameterisation, self.sigma_data)
                for k, s in per_leaf.items()
            }
            if isinstance(x, Mapping)
            else coefficients(per_leaf, self.parameterisation, self.sigma_data)
        )

        def leaf_coef(key: str | None) -> tuple[Tensor, Tensor, Tensor]:
            return coef[key] if key is not None else coef

        if isinstance(x, Mapping):
            x_in = {k: v * leaf_coef(k)[2].to(v.dtype) for k, v in x.items()}
        else:
            x_in = x * leaf_coef(None)[2].to(x.dtype)
        out = self.net(x_in, c_noise, **cond)

        def combine(v: Tensor, f: Tensor, key: str | None) -> Tensor:
            c_skip, c_out, _ = leaf_coef(key)
            return c_skip * v + c_out * f.to(v.dtype)

        if isinstance(x, Mapping):
            return {k: combine(v, out[k], k) for k, v in x.items()}
        return combine(x, out, None)
