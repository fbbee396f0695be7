"""Noise spaces: the linear subspace a modality's data and noise live in.

Point clouds with zero centre of mass live in a subspace of dimension 3(N - 1); symmetric
adjacency matrices with an empty diagonal in one of dimension N(N - 1)/2. A modality declares its
space once (``Modality.noise_space(config)``) and the core applies it everywhere it matters: every
noise draw (training and sampling), the denoiser's output, the likelihood's trace probes, and the
dimension count of the prior density and bits/dim.

Every projection here is *orthogonal* in the ambient (Euclidean) coordinates, so projecting
standard normal noise gives the standard normal distribution of the subspace, and densities are
with respect to the subspace's own Lebesgue measure. (A symmetric matrix's off-diagonal entries
thus carry variance 1/2: the pair (A_ij, A_ji) is one coordinate of length sqrt(2) A_ij.)
Projections must be idempotent and keep padded entries at zero; ``polydiff.testing`` checks both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from polydiff.state import Mask, MaskError, State, apply_mask, expand_mask, mask_leaf

__all__ = [
    "FULL",
    "FullSpace",
    "LegacyShapeNoise",
    "NoiseSpace",
    "PerKey",
    "SymmetricHollow",
    "ZeroMean",
    "valid_count",
]


def valid_count(x: Tensor, mask: Tensor | None) -> Tensor:
    """Number of valid entries of each sample of ``x`` -> ``(B,)`` (float)."""
    b = x.shape[0]
    if mask is None:
        return torch.full((b,), float(x[0].numel()), device=x.device)
    return expand_mask(mask, x).reshape(b, -1).sum(1).float()


class NoiseSpace:
    """The whole space of valid entries; subclasses override both methods together."""

    def project(self, state: State, mask: Mask) -> State:
        """Orthogonal projection of ``state`` (batch first) onto the space; padded entries 0."""
        return apply_mask(state, mask)

    def dims(self, state: State, mask: Mask) -> Tensor:
        """Dimension of the space for each sample -> ``(B,)`` float."""
        if isinstance(state, Mapping):
            return sum(valid_count(v, mask_leaf(mask, k)) for k, v in state.items())
        return valid_count(state, mask_leaf(mask, None))


class FullSpace(NoiseSpace):
    """Every valid entry (the default)."""


FULL = FullSpace()


class ZeroMean(NoiseSpace):
    """Zero mean over ``axis`` of a tensor state (e.g. the points of a ``(B, N, 3)`` cloud): the
    centre of mass of the valid elements is the origin; dimension (n_valid - 1) per feature."""

    def __init__(self, axis: int = 1):
        if axis < 1:
            raise ValueError(f"axis must be >= 1 (0 is the batch), got {axis}")
        self.axis = axis

    def project(self, state: State, mask: Mask) -> State:
        x = _tensor(state, "ZeroMean")
        m = mask_leaf(mask, None)
        w = torch.ones_like(x) if m is None else expand_mask(m, x)
        count = w.sum(self.axis, keepdim=True).clamp_min(1)
        mean = (x * w).sum(self.axis, keepdim=True) / count
        return (x - mean) * w

    def dims(self, state: State, mask: Mask) -> Tensor:
        x = _tensor(state, "ZeroMean")
        m = mask_leaf(mask, None)
        w = torch.ones_like(x) if m is None else expand_mask(m, x)
        # a valid element contributes one constraint per feature: (valid along axis) - 1
        per_feature = w.sum(self.axis)  # (B, *other dims)
        return (per_feature - (per_feature > 0).to(per_feature.dtype)).reshape(x.shape[0], -1).sum(1).float()


class SymmetricHollow(NoiseSpace):
    """Symmetric in the last two dimensions with a zero diagonal (undirected graphs without
    self-loops); dimension: the valid off-diagonal entries over 2."""

    def project(self, state: State, mask: Mask) -> State:
        x = _tensor(state, "SymmetricHollow")
        _check_pair_mask(x, mask_leaf(mask, None))
        sym = 0.5 * (x + x.transpose(-1, -2))
        eye = torch.eye(x.shape[-1], device=x.device, dtype=torch.bool)
        sym = sym.masked_fill(eye, 0.0)
        return apply_mask(sym, mask_leaf(mask, None))

    def dims(self, state: State, mask: Mask) -> Tensor:
        x = _tensor(state, "SymmetricHollow")
        m = mask_leaf(mask, None)
        _check_pair_mask(x, m)
        w = torch.ones_like(x) if m is None else expand_mask(m, x)
        eye = torch.eye(x.shape[-1], device=x.device, dtype=w.dtype)
        off = w * (1 - eye)
        return off.reshape(x.shape[0], -1).sum(1).float() / 2


class PerKey(NoiseSpace):
    """A space for each tensor of a mapping state (keys left out: the full space)."""

    def __init__(self, spaces: Mapping[str, NoiseSpace]):
        self.spaces = dict(spaces)

    def project(self, state: State, mask: Mask) -> State:
        if not isinstance(state, Mapping):
            raise TypeError("PerKey needs a mapping state")
        return {
            k: self.spaces.get(k, FULL).project(v, mask_leaf(mask, k)) for k, v in state.items()
        }

    def dims(self, state: State, mask: Mask) -> Tensor:
        if not isinstance(state, Mapping):
            raise TypeError("PerKey needs a mapping state")
        return sum(self.spaces.get(k, FULL).dims(v, mask_leaf(mask, k)) for k, v in state.items())


class LegacyShapeNoise(NoiseSpace):
    """Contract 1's ``shape_noise(noise, mask)`` read as a projection; its dimension is unknown to
    the core, so the valid-entry count stands in (as contract 1 did)."""

    def __init__(self, fn: Callable[[State, Mask], State]):
        self.fn = fn

    def project(self, state: State, mask: Mask) -> State:
        return apply_mask(self.fn(state, mask), mask)


def _tensor(state: State, who: str) -> Tensor:
    if isinstance(state, Mapping):
        raise TypeError(f"{who} applies to a tensor state; wrap it in PerKey for a mapping state")
    return state


def _check_pair_mask(x: Tensor, m: Tensor | None) -> None:
    """A pair tensor needs a pair mask: a node mask would line up with the rows only."""
    if m is None:
        return
    n = x.shape[-1]
    if m.ndim != x.ndim or m.shape[-1] != n or m.shape[-2] != n:
        shape = "(" + ", ".join(str(d) for d in m.shape) + ")"
        full = "(" + ", ".join(str(d) for d in x.shape) + ")"
        raise MaskError(
            f"mask {shape} on pair data {full} would not mask both nodes of each pair; "
            "give a pair mask, polydiff.state.pair_mask(node_mask)"
        )
