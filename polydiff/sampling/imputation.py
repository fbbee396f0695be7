"""Imputation of known entries and RePaint resampling, for any sampler on any state.

``run_sampler(..., known=(values, known_mask), imputation_resample=r, imputation_jump=j,
imputation_guidance=w)`` drives its solver through an :class:`Imputation`:

- :func:`replacement_denoiser` is imputation by replacement (Song et al. 2021, App. I.2): before
  each call the known entries of the state are set to the known values noised to the current level,
  and the estimate of the known entries is the known values. Samplers update each entry from its own
  value and D, so this is the same as replacing the known entries of the state at every step.
- :func:`reconstruction_guided` adds reconstruction guidance (Ho et al. 2022, "Video Diffusion
  Models", eq. 7): the estimate of the unknown entries moves down the gradient of the known entries'
  reconstruction error, D~ = D - (w / 2) grad_x ||values - D(x)||^2 over the known entries, so the
  generated part is steered towards completions the kept part agrees with, not only noised along
  with it. It costs a backward pass through the network per call.
- :func:`repaint` is RePaint's resampling (Lugmayr et al. 2022): every block of ``jump`` steps
  runs ``rounds`` times, renoised back to the block's first level in between, so the unknown
  entries harmonise with the known ones.

This lives with the samplers, not in :mod:`polydiff.guidance` (which re-exports it), because
``run_sampler`` itself takes ``known=``: guidance builds on sampling, never the reverse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polydiff.sampling.common import noisy_steps
from polydiff.sampling.registry import SamplerSpec
from polydiff.state import Mask, State, append_dims, check_mask, pack, pack_mask, unpack

__all__ = ["Imputation", "reconstruction_guided", "repaint", "replacement_denoiser"]


def replacement_denoiser(
    denoiser: Callable[..., State],
    values: State,
    known_mask: Mask,
    noise: Callable[[Tensor], Tensor] | Tensor | None = None,
) -> Callable[..., State]:
    """Imputation by replacement: a denoiser that sees the known entries noised to its level.

    Before each call the known entries of x are set to ``values + sigma * eps`` (``eps`` fresh from
    ``noise(like)`` when it is a callable, the fixed packed tensor ``noise`` when it is a tensor —
    use that for deterministic solvers — or fresh standard-normal noise when None); the estimate
    returned for the known entries is ``values``. Works on states of any structure.
    """
    flat_values, layout = pack(values)
    known = pack_mask(known_mask, values)
    if known is None:
        known = torch.ones_like(flat_values)
    known = known > 0

    def wrapped(x: State, sigma: Tensor, **cond: Any) -> State:
        flat, lay = pack(x)
        if isinstance(noise, Tensor):
            eps = noise
        elif noise is not None:
            eps = noise(flat)
        else:
            eps = torch.randn_like(flat)
        s = append_dims(sigma.reshape(-1).to(flat.dtype).expand(flat.shape[0]), 2)
        x_in = torch.where(known, flat_values + s * eps, flat)
        out, _ = pack(denoiser(unpack(x_in, lay), sigma, **cond))
        return unpack(torch.where(known, flat_values, out), lay)

    return wrapped


def reconstruction_guided(
    denoiser: Callable[..., Tensor], values: Tensor, known_mask: Tensor, weight: float
) -> Callable[..., Tensor]:
    """Reconstruction guidance on packed ``(B, D)`` states (see the module docstring).

    ``known_mask`` is 1 where ``values`` are known. The gradient is taken with autograd even when
    the caller sampled under ``torch.no_grad()``; the network's parameters get no ``.grad``.
    """
    weight = float(weight)
    known = (known_mask > 0).to(values.dtype)

    def guided(x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            out = denoiser(x_in, sigma, **cond)
            err = ((values - out) * known).pow(2).sum()
            (grad,) = torch.autograd.grad(err, x_in)
        return (out - 0.5 * weight * grad).detach()

    return guided


def repaint(
    fn: Callable[..., Tensor],
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    sigmas: Tensor,
    *,
    rounds: int,
    jump: int,
    noise: Callable[[Tensor], Tensor],
    callback: Callable | None = None,
    **options: Any,
) -> Tensor:
    """Run the sampler ``fn`` over ``sigmas`` in blocks of ``jump`` steps, each ``rounds`` times.

    Between rounds the state is renoised from the block's last level back to its first with fresh
    ``noise(like)`` (RePaint's jump, Lugmayr et al. 2022). Each block is its own grid, so multistep
    solvers restart their history per block. The step to sigma = 0 is one block of its own, run
    once (there is nothing to renoise from). ``callback`` sees global step indices.
    """
    sig = sigmas.tolist()
    n = len(sig) - 1
    n_noisy = noisy_steps(sig)
    starts = [*range(0, n_noisy, jump), *([n_noisy] if n_noisy < n else [])]
    for start in starts:
        end = n if start == n_noisy else min(start + jump, n_noisy)
        block_rounds = rounds if sig[end] > 0 else 1
        for r in range(block_rounds):
            step_cb = None if callback is None else (lambda j, *a, _s=start: callback(_s + j, *a))
            x = fn(denoiser, x, sigmas[start : end + 1], noise=noise, callback=step_cb, **options)
            if r + 1 < block_rounds:
                x = x + math.sqrt(sig[start] ** 2 - sig[end] ** 2) * noise(x)
    return x


@dataclass(frozen=True)
class Imputation:
    """How ``run_sampler`` drives its solver: plain, or imputing ``known`` and/or resampling.

    ``known`` is ``(values, known_mask)`` (1 = known; ``None`` = every entry) or ``None``;
    ``resample`` and ``jump`` are RePaint's rounds and block length (``resample = 1``: plain
    replacement); ``guidance`` the reconstruction-guidance weight (0: off).
    """

    known: tuple[State, Mask] | None = None
    resample: int = 1
    jump: int = 1
    guidance: float = 0.0

    def __post_init__(self) -> None:
        if self.resample < 1 or self.jump < 1:
            raise ValueError("imputation_resample and imputation_jump must be >= 1")

    def run(
        self,
        spec: SamplerSpec,
        denoiser: Callable[[Tensor, Tensor], Tensor],
        x: Tensor,
        sigmas: Tensor,
        *,
        draw: Callable[[Tensor], Tensor],
        noise: Tensor,
        callback: Callable | None = None,
        **options: Any,
    ) -> Tensor:
        """Sample the packed ``(B, D)`` state ``x`` over ``sigmas`` with ``spec``'s solver.

        ``draw(like)`` is the run's fresh (shaped, masked) noise and ``noise`` the packed prior
        noise ``x`` was made from: deterministic solvers noise the known entries with it, so they
        stay deterministic; stochastic ones (and any resampling) draw fresh noise each call.
        """
        model = denoiser
        if self.known is not None:
            values, known_mask = self.known
            check_mask(values, known_mask, "known_mask")
            flat_values, _ = pack(values)
            flat_values = flat_values.to(x)
            flat_known = pack_mask(known_mask, values)
            flat_known = torch.ones_like(x) if flat_known is None else flat_known
            if self.guidance > 0:
                model = reconstruction_guided(model, flat_values, flat_known, self.guidance)
            eps = draw if spec.stochastic or self.resample > 1 else noise
            model = replacement_denoiser(model, flat_values, flat_known, eps)
        if self.resample == 1:
            x = spec.fn(model, x, sigmas, noise=draw, callback=callback, **options)
        else:
            x = repaint(
                spec.fn, model, x, sigmas, rounds=self.resample, jump=self.jump, noise=draw,
                callback=callback, **options,
            )
        if self.known is not None:
            # the known entries come back as given, noised to the last level when it is above 0
            s_end = float(sigmas[-1])
            fill = flat_values + (s_end * noise if s_end > 0 else 0.0)
            x = torch.where(flat_known > 0, fill, x)
        return x
