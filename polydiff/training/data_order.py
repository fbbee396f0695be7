"""The resumable order of the data: a permutation per epoch from ``(seed, epoch)``, cut into
global batches and each global batch into every rank's micro-batches.

The union over ranks of a global batch is the batch a single process would see, so a step means
the same thing at any world size; and a position (global batches consumed) is all a resumed run
needs to continue the very same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from polydiff.errors import UserError
from polydiff.training.rng import rank_seed


class EpochBatches:
    """Shuffled batches of indices, reshuffled each epoch from (seed, epoch): resumable exactly.

    Each global batch of ``batch_size`` indices is cut into ``parts`` equal slices and the iterator
    yields the slices listed in ``take``, in that order (default: the whole batch). A rank of a
    distributed run with gradient accumulation takes ``[m * world + rank for m in range(accum)]``.
    ``epoch`` and ``offset`` (in global batches) say where the next batch comes from.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epoch: int = 0,
        offset: int = 0,
        *,
        parts: int = 1,
        take: Sequence[int] = (0,),
    ):
        if n < batch_size:
            raise UserError(
                f"dataset has {n} items, fewer than the batch size {batch_size} (lower --batch-size)"
            )
        if batch_size % parts:
            raise UserError(f"batch size {batch_size} does not split into {parts} equal parts")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.offset = epoch, offset
        self.parts, self.take = parts, list(take)

    @property
    def per_epoch(self) -> int:
        return self.n // self.batch_size

    def seek(self, global_batch: int) -> None:
        """Position the iterator before global batch number ``global_batch`` (from the start)."""
        self.epoch, self.offset = divmod(global_batch, self.per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        part = self.batch_size // self.parts
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.n, generator=gen).tolist()
            while self.offset < self.per_epoch:
                start = self.offset * self.batch_size
                self.offset += 1
                for k in self.take:
                    yield perm[start + k * part : start + (k + 1) * part]
            self.epoch, self.offset = self.epoch + 1, 0


def rank_loader(
    dataset: Any,
    collate: Callable[[list[Any]], Any],
    *,
    batch_size: int,
    seed: int,
    position: int,
    world_size: int = 1,
    rank: int = 0,
    grad_accum: int = 1,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """This rank's micro-batches (``grad_accum`` per global batch), from global batch
    ``position`` on, forever."""
    sampler = EpochBatches(
        len(dataset),
        batch_size,
        seed,
        parts=world_size * grad_accum,
        take=[m * world_size + rank for m in range(grad_accum)],
    )
    sampler.seek(position)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        # its own generator: creating the loader must not draw from the global RNG
        generator=torch.Generator().manual_seed(rank_seed(seed, rank) + position),
    )
