"""The reverse SDE and the probability-flow ODE as objects for third-party solvers.

- :class:`ReverseSDE` follows torchsde's SDE protocol (``noise_type = "diagonal"``,
  ``sde_type = "ito"``, drift ``f(t, y)`` and diffusion ``g(t, y)``), so ``torchsde.sdeint`` can
  integrate it. torchsde integrates forward in time, so the time is ``t = -sigma``: go from
  ``t = -sigma_max`` to ``t = -sigma_min``. In the unscaled view the reverse SDE is
  dx = 2 (D - x) / sigma dt + sqrt(2 sigma) dW (Song et al. 2021, Eq. 6 with dsigma = -dt).
- :class:`ProbabilityFlowODE` is a callable ``func(t, y)`` for ``torchdiffeq.odeint``:
  dy/dsigma = (y - D(y, sigma)) / sigma with ``t = sigma`` (integrate with decreasing times), or,
  with ``log_sigma=True``, dy/du = y - D(y, e^u) with ``t = log sigma`` — smoother, fewer steps.

Neither imports torchsde or torchdiffeq; both count their denoiser calls in ``nfe``. torchsde needs
``(B, D)`` states: pass ``shape`` to give the denoiser ``(B, *shape)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor


class _Wrapped:
    def __init__(self, denoiser: Callable, cond: Mapping[str, Any] | None, shape):
        self.denoiser = denoiser
        self.cond = dict(cond or {})
        self.shape = tuple(shape) if shape is not None else None
        self.nfe = 0

    def denoise(self, y: Tensor, sigma: Tensor) -> Tensor:
        self.nfe += 1
        s = sigma.to(y.dtype).reshape(-1).expand(y.shape[0])
        x = y if self.shape is None else y.reshape(y.shape[0], *self.shape)
        return self.denoiser(x, s, **self.cond).reshape(y.shape)


class ReverseSDE(_Wrapped):
    """The reverse-time SDE for ``torchsde.sdeint``, in time t = -sigma (Itô, diagonal noise)."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        cond: Mapping[str, Any] | None = None,
        shape: tuple[int, ...] | None = None,
    ):
        super().__init__(denoiser, cond, shape)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        """Drift 2 (D(y, sigma) - y) / sigma with sigma = -t."""
        sigma = -t
        return 2 * (self.denoise(y, sigma) - y) / sigma

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        """Diagonal diffusion sqrt(2 sigma) (d sigma^2 / d sigma, the same for every SDE here)."""
        return torch.sqrt(2 * (-t)).to(y.dtype).expand_as(y)


class ProbabilityFlowODE(_Wrapped):
    """The probability-flow ODE as ``func(t, y)`` for ``torchdiffeq.odeint``."""

    def __init__(
        self,
        denoiser: Callable[..., Tensor],
        cond: Mapping[str, Any] | None = None,
        shape: tuple[int, ...] | None = None,
        log_sigma: bool = False,
    ):
        super().__init__(denoiser, cond, shape)
        self.log_sigma = log_sigma

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        if self.log_sigma:
            return y - self.denoise(y, t.exp())
        return (y - self.denoise(y, t)) / t
