"""The diffusion state: a tensor of any rank, or a mapping of named tensors.

Every tensor in a state has the batch as its first dimension. A mask is ``None`` (all entries
valid) or has the same structure as the state: for a mapping state, a mapping with every key of the
state (a ``None`` value marks that tensor as unpadded — a missing key is an error, never a silent
"unmasked"). Each mask tensor lines up with the *leading* dimensions of its state tensor and
broadcasts over the rest: ``(B, N)`` for points of shape ``(B, N, 3)``. A mask dimension after the
batch may also be 1 to broadcast there, which is how channel-first data is masked: audio
``(B, C, T)`` takes a ``(B, 1, T)`` time mask (a ``(B, T)`` mask is refused: it would line up
with the channels). Pair data (an adjacency ``(B, N, N)``) takes a pair mask ``(B, N, N)``, made
from a node mask by :func:`pair_mask`; a ``(B, N)`` node mask on it would mask rows only, and
the pair data's noise space (:class:`polydiff.noise_space.SymmetricHollow`) refuses it (only the
space knows the tensor holds pairs). Every entry point of the core (collation, losses, samplers)
validates masks with :func:`check_mask`.
Samplers work on one flat ``(B, D)`` tensor; :func:`pack` / :func:`unpack` convert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

State = Tensor | Mapping[str, Tensor]
Mask = Tensor | Mapping[str, Tensor] | None


class MaskError(ValueError):
    """A mask that does not line up with its state; the message names the key and both shapes."""


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def _check_leaf(x: Tensor, m: Tensor, where: str) -> None:
    if not isinstance(m, Tensor):
        raise MaskError(f"{where}: mask is a {type(m).__name__}, not a tensor")
    if m.ndim < 1 or m.ndim > x.ndim:
        raise MaskError(
            f"{where}: mask {_shape(m)} has rank {m.ndim}, state {_shape(x)} has rank {x.ndim}; "
            "a mask covers the batch and some leading dimensions"
        )
    for i, (dm, dx) in enumerate(zip(m.shape, x.shape, strict=False)):
        if dm != dx and not (i > 0 and dm == 1):
            raise MaskError(
                f"{where}: mask {_shape(m)} does not line up with state {_shape(x)}: dimension "
                f"{i} is {dm} in the mask and {dx} in the state (a mask holds the leading "
                "dimensions of its tensor; use 1 to broadcast, e.g. (B, 1, T) for (B, C, T))"
            )


def check_mask(state: State, mask: Mask, where: str = "mask") -> None:
    """Raise :class:`MaskError` unless ``mask`` fits ``state`` (module docstring); ``where`` names
    the caller in the message."""
    if mask is None:
        return
    if isinstance(state, Mapping):
        if not isinstance(mask, Mapping):
            raise MaskError(
                f"{where}: the state is a mapping ({', '.join(state)}) but the mask is a "
                f"{type(mask).__name__}; give a mapping with the same keys"
            )
        missing = [k for k in state if k not in mask]
        extra = [k for k in mask if k not in state]
        if missing:
            raise MaskError(
                f"{where}: mask has no entry for state key {missing[0]!r} (give None to mark it unpadded)"
            )
        if extra:
            raise MaskError(f"{where}: mask key {extra[0]!r} is not in the state ({', '.join(state)})")
        for k, v in state.items():
            if mask[k] is not None:
                _check_leaf(v, mask[k], f"{where} [{k}]")
        return
    if isinstance(mask, Mapping):
        raise MaskError(f"{where}: the state is a tensor {_shape(state)} but the mask is a mapping")
    _check_leaf(state, mask, where)


def pair_mask(node_mask: Tensor) -> Tensor:
    """``(B, N)`` node mask -> ``(B, N, N)`` mask of the pairs of valid nodes."""
    m = node_mask.to(torch.float32) if not node_mask.is_floating_point() else node_mask
    return (m[:, :, None] * m[:, None, :]).to(node_mask.dtype)


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to ``x`` until it has ``ndim`` dimensions."""
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"tensor of rank {x.ndim} cannot broadcast to rank {ndim}")
    return x.reshape(*x.shape, *([1] * missing))


def tree_map(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` leaf-wise over states of identical structure."""
    first = states[0]
    if isinstance(first, Mapping):
        return {k: fn(*(s[k] for s in states)) for k in first}
    return fn(*states)


def state_to(state: State | None, device: torch.device | str) -> State | None:
    """A state (or mask) moved to ``device``; ``None`` stays ``None``."""
    return None if state is None else tree_map(lambda t: t.to(device), state)


def leaves(state: State) -> list[Tensor]:
    return list(state.values()) if isinstance(state, Mapping) else [state]


def batch_size(state: State) -> int:
    return leaves(state)[0].shape[0]


def state_device(state: State) -> torch.device:
    return leaves(state)[0].device


def mask_leaf(mask: Mask, key: str | None) -> Tensor | None:
    if mask is None:
        return None
    if isinstance(mask, Mapping):
        return mask.get(key) if key is not None else None
    return mask


def expand_mask(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """Broadcast a leading-dims mask to the full shape of ``like`` (as the dtype of ``like``)."""
    if mask is None:
        return None
    return append_dims(mask.to(like.dtype), like.ndim).expand_as(like)


def apply_mask(state: State, mask: Mask) -> State:
    """Zero the padded entries of ``state``."""
    if mask is None:
        return state
    if isinstance(state, Mapping):
        out = {}
        for k, v in state.items():
            m = mask_leaf(mask, k)
            out[k] = v if m is None else v * append_dims(m.to(v.dtype), v.ndim)
        return out
    return state * append_dims(mask.to(state.dtype), state.ndim)


def randn_like_state(state: State, generator: torch.Generator | None = None) -> State:
    def draw(t: Tensor) -> Tensor:
        return torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)

    return tree_map(draw, state)


def masked_mean_per_sample(values: State, mask: Mask = None) -> Tensor:
    """Mean over the valid entries of each sample, across every tensor of the state -> ``(B,)``."""
    total = None
    count = None
    items = values.items() if isinstance(values, Mapping) else [(None, values)]
    for key, v in items:
        m = expand_mask(mask_leaf(mask, key), v)
        flat = v.reshape(v.shape[0], -1)
        if m is None:
            s = flat.sum(1)
            c = torch.full_like(s, flat.shape[1])
        else:
            mf = m.reshape(v.shape[0], -1)
            s = (flat * mf).sum(1)
            c = mf.sum(1)
        total = s if total is None else total + s
        count = c if count is None else count + c
    return total / count.clamp_min(1)


@dataclass(frozen=True)
class Layout:
    """How a state was flattened by :func:`pack`, to undo it."""

    keys: tuple[str, ...] | None
    shapes: tuple[torch.Size, ...]

    @property
    def sizes(self) -> list[int]:
        return [int(torch.Size(s).numel()) for s in self.shapes]


def pack(state: State) -> tuple[Tensor, Layout]:
    """Flatten a state to ``(B, D)`` (a plain tensor is reshaped, a mapping concatenated)."""
    if isinstance(state, Mapping):
        keys = tuple(state)
        parts = [state[k].reshape(state[k].shape[0], -1) for k in keys]
        layout = Layout(keys, tuple(state[k].shape[1:] for k in keys))
        return torch.cat(parts, dim=1), layout
    return state.reshape(state.shape[0], -1), Layout(None, (state.shape[1:],))


def unpack(flat: Tensor, layout: Layout) -> State:
    b = flat.shape[0]
    if layout.keys is None:
        return flat.reshape(b, *layout.shapes[0])
    parts = torch.split(flat, layout.sizes, dim=1)
    return {k: p.reshape(b, *s) for k, p, s in zip(layout.keys, parts, layout.shapes, strict=True)}


def pack_mask(mask: Mask, like: State) -> Tensor | None:
    """The mask of a packed state: ``(B, D)`` in the dtype of the state, or ``None``."""
    if mask is None:
        return None
    if isinstance(like, Mapping):
        parts = []
        for k, v in like.items():
            m = mask_leaf(mask, k)
            full = torch.ones_like(v) if m is None else expand_mask(m, v)
            parts.append(full.reshape(v.shape[0], -1))
        return torch.cat(parts, dim=1)
    return expand_mask(mask, like).reshape(like.shape[0], -1)
