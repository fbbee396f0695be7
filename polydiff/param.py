"""Network parameterisations, all wrapped into one denoiser D(x, sigma, **cond) ~ E[x_0 | x].

``x`` is the unscaled noisy state x_0 + sigma * eps. The wrapped network sees
``net(c_in * x, c_noise, **cond)`` and its raw output F becomes D = c_skip * x + c_out * F
(Karras et al. 2022, Table 1 and Eq. 7). The other parameterisations are special cases:

- ``edm``:   c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2)   (sd = sigma_data)
- ``eps``:   F predicts eps: c_skip = 1, c_out = -sigma
- ``x0``:    F predicts x_0: c_skip = 0, c_out = 1
- ``v``:     F predicts v = (eps - sigma x_0)/sqrt(1+sigma^2)-style velocity: EDM with sd = 1
- ``score``: F predicts sigma * score: c_skip = 1, c_out = sigma
with c_in = 1/sqrt(sigma^2 + sd^2) throughout (for sd = 1 that is VP's scale s(t)).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from polydiff.sde import SDE
from polydiff.state import State, append_dims, tree_map

PARAMETERISATIONS = ("edm", "eps", "x0", "v", "score")


def coefficients(
    sigma: Tensor, parameterisation: str, sigma_data: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in) for noise levels ``sigma`` of shape (B,)."""
    sd = 1.0 if parameterisation == "v" else sigma_data
    c_in = 1 / torch.sqrt(sigma**2 + sd**2)
    if parameterisation in ("edm", "v"):
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
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


class Denoiser(nn.Module):
    """Wrap ``net(x_in, c_noise, **cond)`` into D(x, sigma, **cond) -> estimate of x_0."""

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

    def forward(self, x: State, sigma: Tensor, **cond: Tensor) -> State:
        leaf = next(iter(x.values())) if isinstance(x, Mapping) else x
        sigma = sigma.to(device=leaf.device, dtype=torch.float32).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(leaf.shape[0])
        c_skip, c_out, c_in = coefficients(sigma, self.parameterisation, self.sigma_data)
        c_noise = self.sde.c_noise(sigma).to(torch.float32)
        x_in = tree_map(lambda v: v * append_dims(c_in, v.ndim).to(v.dtype), x)
        out = self.net(x_in, c_noise, **cond)
        return tree_map(
            lambda v, f: append_dims(c_skip, v.ndim) * v + append_dims(c_out, v.ndim) * f.to(v.dtype),
            x,
            out,
        )
