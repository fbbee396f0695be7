"""Guidance for any modality: classifier-free guidance and imputation of known entries.

Both are denoiser-level tools, so every sampler uses them unchanged:

- :func:`cfg_denoiser` wraps a conditional denoiser into the classifier-free guided one,
  D = D_uncond + scale (D_cond - D_uncond) (Ho & Salimans 2022), both halves in one batched call.
- :func:`replacement_denoiser` is imputation by replacement (Song et al. 2021, App. I.2): before
  each call the known entries of the state are set to the known values noised to the current level,
  and the estimate of the known entries is the known values.
  ``run_sampler(..., known=(values, known_mask), imputation_resample=r)`` does this and adds
  RePaint's resampling (Lugmayr et al. 2022): each step is repeated r times, renoising back in
  between, so the unknown entries harmonise with the known ones.
- :func:`reconstruction_guided` adds reconstruction guidance (Ho et al. 2022, "Video Diffusion
  Models", eq. 7), steering the unknown entries towards completions the known ones agree with;
  ``run_sampler(..., known=..., imputation_guidance=w)`` applies it under the replacement.
- :func:`impute` is the one-call entry point.

The imputation machinery is :mod:`polydiff.sampling.imputation` (``run_sampler`` takes
``known=`` itself); it is re-exported here, and this module builds on sampling, never the reverse.

States are tensors of any rank or mappings of tensors; masks follow :mod:`polydiff.state`
(leading dimensions, 1 = known / valid).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff.sampling import run_sampler
from polydiff.sampling.imputation import reconstruction_guided, replacement_denoiser
from polydiff.sde import SDE
from polydiff.state import Mask, State, batch_size

__all__ = ["cfg_denoiser", "impute", "reconstruction_guided", "replacement_denoiser"]


def _cat_cond(cond: Mapping[str, Any], null_cond: Mapping[str, Any], b: int) -> dict[str, Any]:
    out = {}
    for key, value in cond.items():
        null = null_cond.get(key, value)
        if isinstance(value, Tensor):
            null = torch.as_tensor(null, device=value.device, dtype=value.dtype)
            if null.ndim < value.ndim or null.shape[0] != b:
                null = null.reshape(-1, *value.shape[1:])[:1].expand(b, *value.shape[1:])
            out[key] = torch.cat([value, null])
        elif value is None and null is None:
            out[key] = None
        else:
            raise TypeError(
                f"classifier-free guidance needs tensor conditions; {key!r} is {type(value)}"
            )
    return out


def _cat(state: State) -> State:
    if isinstance(state, Mapping):
        return {k: torch.cat([v, v]) for k, v in state.items()}
    return torch.cat([state, state])


def cfg_denoiser(
    denoiser: Callable[..., State], scale: float, null_cond: Mapping[str, Any]
) -> Callable[..., State]:
    """Classifier-free guidance (Ho & Salimans 2022): D = D_u + scale (D_c - D_u).

    ``denoiser(x, sigma, **cond)`` is called once on the doubled batch, the first half with
    ``cond`` and the second with ``null_cond`` (same keys; a tensor with batch size 1 or without a
    batch dimension is broadcast, e.g. the "no label" class). ``scale = 1`` is the conditional
    denoiser and ``scale = 0`` the unconditional one, each in a single plain call. One guided call
    counts as one function evaluation.
    """
    scale = float(scale)

    def guided(x: State, sigma: Tensor, **cond: Any) -> State:
        if scale == 1.0:
            return denoiser(x, sigma, **cond)
        b = batch_size(x)
        both = _cat_cond(cond, null_cond, b)
        if scale == 0.0:
            uncond = {k: (v[b:] if isinstance(v, Tensor) else v) for k, v in both.items()}
            return denoiser(x, sigma, **uncond)
        sigma2 = torch.cat([sigma.reshape(-1).expand(b), sigma.reshape(-1).expand(b)])
        out = denoiser(_cat(x), sigma2, **both)
        if isinstance(out, Mapping):
            return {k: v[b:] + scale * (v[:b] - v[b:]) for k, v in out.items()}
        return out[b:] + scale * (out[:b] - out[b:])

    return guided


def impute(
    denoiser: Callable[..., State],
    sde: SDE,
    *,
    noise: State,
    values: State,
    known_mask: Mask,
    resample: int = 1,
    **options: Any,
) -> State:
    """Sample the unknown entries given ``values`` at ``known_mask`` (1 = known) with any sampler.

    ``resample`` > 1 repeats every step that many times with renoising in between (RePaint).
    Other options go to :func:`polydiff.sampling.run_sampler`.
    """
    return run_sampler(
        denoiser,
        sde,
        noise=noise,
        known=(values, known_mask),
        imputation_resample=resample,
        **options,
    ).x
