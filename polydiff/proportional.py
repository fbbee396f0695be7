"""Sample layouts in the data's exact proportions, instead of independent draws.

A plugin that asks for ``n`` samples of some discrete property of its training items (a class
label, a graph's node count) can draw ``n`` training values at random, or allot them: each value
gets ``n`` times its share, rounded by largest remainders, in a shuffled order. Every sample's
marginal is the data's either way; allotting removes the batch-to-batch scatter of the mix, which
on small evaluation sets (20 graphs, a few hundred images) otherwise moves set-level metrics by as
much as the models differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["proportional_counts", "proportional_draw"]


def proportional_counts(freq: Tensor, n: int) -> Tensor:
    """Integer counts summing to ``n`` closest to ``n * freq`` (largest-remainder rounding; ties go
    to the earlier entry)."""
    share = freq.double() / freq.sum() * n
    counts = share.floor().long()
    rest = n - int(counts.sum())
    if rest:
        order = torch.argsort(share - counts, descending=True, stable=True)
        counts[order[:rest]] += 1
    return counts


def proportional_draw(values: Sequence[int] | Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` integers distributed as ``values`` are (each distinct value ``n`` times its share,
    rounded by :func:`proportional_counts`), in an order shuffled by ``generator``."""
    v = torch.as_tensor(values).long().reshape(-1)
    if v.numel() == 0:
        raise ValueError("proportional_draw needs at least one value")
    distinct, freq = torch.unique(v, return_counts=True)
    allotted = torch.repeat_interleave(distinct, proportional_counts(freq, n))
    return allotted[torch.randperm(n, generator=generator)]
