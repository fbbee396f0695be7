"""Guidance for any modality: classifier-free guidance and imputation of known entries.

Both are denoiser-level tools, so every sampler uses them unchanged:

- :func:`cfg_denoiser` wraps a conditional denoiser into the classifier-free guided one,
  D = D_uncond + scale (D_cond - D_uncond) (Ho & Salimans 2022), both halves in one batched call.
- :func:`replacement_denoiser` is imputation by replacement (Song et al. 2021, App. I.2): before
  each call the known entries of the state are set to the known values noised to the current level,
  and the estimate of the known entries is the known values. Samplers update each entry from its own
  value and D, so this is the same as replacing the known entries of the state at every step.
  ``run_sampler(..., known=(values, known_mask), imputation_resample=r)`` does this and adds
  RePaint's resampling (Lugmayr et al. 2022): each step is repeated r times, renoising back in
  between, so the unknown entries harmonise with the known ones.
- :func:`reconstruction_guided` adds reconstruction guidance (Ho et al. 2022, "Video Diffusion
  Models", eq. 7): the estimate of the unknown entries moves down the gradient of the known entries'
  reconstruction error, D~ = D - (w / 2) grad_x ||values - D(x)||^2 over the known entries, so the
  generated part is steered towards completions the kept part agrees with, not only noised along
  with it. ``run_sampler(..., known=..., imputation_guidance=w)`` applies it under the replacement;
  it costs a backward pass through the network per call.
- :func:`impute` is the one-call entry point.

States are tensors of any rank or mappings of tensors; masks follow :mod:`polydiff.state`
(leading dimensions, 1 = known / valid).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff.state import Mask, State, append_dims, batch_size, pack, pack_mask, unpack


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


def impute(
    denoiser: Callable[..., State],
    sde: Any,
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
    from polydiff.sampling import run_sampler

    return run_sampler(
        denoiser,
        sde,
        noise=noise,
        known=(values, known_mask),
        imputation_resample=resample,
        **options,
    ).x
