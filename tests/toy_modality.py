"""An in-memory modality whose state is a mapping of two tensors with a ragged mask.

Sets have 3 to 6 elements; each element carries a 2-D position ``pos`` and a scalar ``val``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.noise_space import PerKey, ZeroMean
from polydiff.protocol import Batch, DataError, Modality

MAX_N = 6


class ToySets(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            k = int(torch.randint(3, MAX_N + 1, (1,), generator=g))
            pos = torch.randn(k, 2, generator=g) * 0.3
            pos = pos - pos.mean(0)  # the modality's noise space: zero centre of mass
            self.items.append({"pos": pos, "val": pos.sum(1) - 1.0})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.items[i]}


class ToyNet(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.inp = nn.Linear(3 + 1, width)
        self.mid = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.out = nn.Linear(width, 3)

    def forward(self, x: Mapping[str, torch.Tensor], c_noise: torch.Tensor) -> dict[str, torch.Tensor]:
        pos, val = x["pos"], x["val"]
        n = pos.shape[1]
        h = torch.cat([pos, val[..., None], c_noise.reshape(-1, 1, 1).expand(-1, n, 1)], -1)
        h = self.inp(h)
        h = h + h.mean(1, keepdim=True)  # let elements see the set
        o = self.out(self.mid(h))
        return {"pos": o[..., :2], "val": o[..., 2]}


class ToyModality(Modality):
    name = "toy"
    description = "ragged sets of (position, value) pairs"
    builtin_datasets = ("sets",)

    def default_config(self) -> dict[str, dict[str, Any]]:
        return {
            "data": {"dataset": "sets", "size": 64},
            "model": {"width": 32},
            "train": {"steps": 5, "batch_size": 8, "log_every": 1, "warmup_steps": 1},
            "sample": {"sampler": "euler", "steps": 4, "n": 5},
        }

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str) -> ToySets:
        if str(source) != "sets":
            raise DataError(f"{source}: the toy modality only has the built-in 'sets'")
        return ToySets(int(config["data"]["size"]), seed=0 if split == "train" else 1)

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        b = len(items)
        pos = torch.zeros(b, MAX_N, 2)
        val = torch.zeros(b, MAX_N)
        mask = torch.zeros(b, MAX_N)
        for i, it in enumerate(items):
            k = it["x"]["pos"].shape[0]
            pos[i, :k] = it["x"]["pos"]
            val[i, :k] = it["x"]["val"]
            mask[i, :k] = 1
        return Batch({"pos": pos, "val": val}, {"pos": mask, "val": mask}, {})

    def build_network(self, config: Mapping[str, Any]) -> nn.Module:
        return ToyNet(int(config["model"]["width"]))

    def noise_space(self, config: Mapping[str, Any]) -> PerKey:
        # zero centre of mass over the valid elements, as a point-cloud modality would
        return PerKey({"pos": ZeroMean(axis=1)})

    def write_samples(self, samples, out_dir: Path, *, mask=None, cond=None, prefix="sample"):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{prefix}s.pt"
        torch.save({"x": dict(samples), "mask": mask}, path)
        return [path]


modality = ToyModality()
