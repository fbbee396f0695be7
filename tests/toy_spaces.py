"""Two in-memory modalities whose data live in a subspace, with closed-form Gaussian data.

* ``ToyClouds``: ragged clouds of 4-8 points in 3-D with zero centre of mass (noise space
  :class:`~polydiff.noise_space.ZeroMean`, dimension 3(N - 1)).
* ``ToyGraphs``: a mapping ``{nodes: (N, 2), adjacency: (N, N)}`` with 3-6 valid nodes, a node
  mask and a pair mask, adjacency symmetric with an empty diagonal (noise space
  ``PerKey(adjacency=SymmetricHollow())``, dimension 2N + N(N - 1)/2).

Data are ``STD`` times standard normal noise projected onto the space: an isotropic Gaussian of
the subspace, whose exact denoiser is ``STD^2 / (STD^2 + sigma^2) * P x``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.noise_space import PerKey, SymmetricHollow, ZeroMean
from polydiff.protocol import Batch, DataError, Modality
from polydiff.state import pair_mask

STD = 0.7


def _config() -> dict[str, dict[str, Any]]:
    return {
        "data": {"dataset": "gauss", "size": 32},
        "model": {"width": 16},
        "train": {"steps": 3, "batch_size": 4, "log_every": 1, "warmup_steps": 1},
        "sample": {"sampler": "euler", "steps": 3, "n": 4},
    }


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class _PointNet(nn.Module):
    """Per-point MLP with a mean-pooled context: permutation-equivariant, any N."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.inp = nn.Linear(3 + 1, width)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(2 * width, 3))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([x, c_noise.reshape(-1, 1, 1).expand(*x.shape[:2], 1)], -1))
        return self.out(torch.cat([h, h.mean(1, keepdim=True).expand_as(h)], -1))


class ToyClouds(Modality):
    name = "toy-clouds"
    description = "ragged zero-mean Gaussian clouds"
    builtin_datasets = ("gauss",)
    max_n = 8

    def default_config(self) -> dict[str, dict[str, Any]]:
        return _config()

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str) -> _Items:
        if str(source) != "gauss":
            raise DataError(f"{source}: toy-clouds only has the built-in 'gauss'")
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        items = []
        for _ in range(int(config["data"]["size"])):
            n = int(torch.randint(4, self.max_n + 1, (1,), generator=g))
            pts = torch.randn(n, 3, generator=g)
            items.append({"x": STD * (pts - pts.mean(0))})
        return _Items(items)

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        x = torch.zeros(len(items), self.max_n, 3)
        mask = torch.zeros(len(items), self.max_n)
        for i, it in enumerate(items):
            k = it["x"].shape[0]
            x[i, :k], mask[i, :k] = it["x"], 1
        return Batch(x, mask, {})

    def noise_space(self, config: Mapping[str, Any]) -> ZeroMean:
        return ZeroMean(axis=1)

    def build_network(self, config: Mapping[str, Any]) -> nn.Module:
        return _PointNet(int(config["model"]["width"]))

    def write_samples(self, samples, out_dir: Path, *, mask=None, cond=None, prefix="sample"):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{prefix}s.pt"
        torch.save({"x": samples, "mask": mask}, path)
        return [path]


class _GraphNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.node = nn.Linear(2 + 1 + 1, width)
        self.node_out = nn.Linear(width, 2)
        self.edge = nn.Linear(1 + 1, 1)

    def forward(self, x: Mapping[str, torch.Tensor], c_noise: torch.Tensor) -> dict[str, torch.Tensor]:
        nodes, adj = x["nodes"], x["adjacency"]
        b, n, _ = nodes.shape
        c = c_noise.reshape(-1, 1, 1)
        deg = adj.sum(-1, keepdim=True)
        h = torch.tanh(self.node(torch.cat([nodes, deg, c.expand(b, n, 1)], -1)))
        e = self.edge(torch.stack([adj, c.expand(b, n, n)], -1)).squeeze(-1)
        return {"nodes": self.node_out(h), "adjacency": e}


class ToyGraphs(Modality):
    name = "toy-graphs"
    description = "symmetric hollow Gaussian adjacencies with node features"
    builtin_datasets = ("gauss",)
    max_n = 6

    def default_config(self) -> dict[str, dict[str, Any]]:
        return _config()

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str) -> _Items:
        if str(source) != "gauss":
            raise DataError(f"{source}: toy-graphs only has the built-in 'gauss'")
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        space = SymmetricHollow()
        items = []
        for _ in range(int(config["data"]["size"])):
            n = int(torch.randint(3, self.max_n + 1, (1,), generator=g))
            adj = space.project(torch.randn(1, n, n, generator=g), None)[0]
            items.append({"x": {"nodes": STD * torch.randn(n, 2, generator=g), "adjacency": STD * adj}})
        return _Items(items)

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        b, n = len(items), self.max_n
        nodes, adj, node_mask = torch.zeros(b, n, 2), torch.zeros(b, n, n), torch.zeros(b, n)
        for i, it in enumerate(items):
            k = it["x"]["nodes"].shape[0]
            nodes[i, :k], adj[i, :k, :k], node_mask[i, :k] = it["x"]["nodes"], it["x"]["adjacency"], 1
        return Batch({"nodes": nodes, "adjacency": adj}, {"nodes": node_mask, "adjacency": pair_mask(node_mask)}, {})

    def noise_space(self, config: Mapping[str, Any]) -> PerKey:
        return PerKey({"adjacency": SymmetricHollow()})

    def build_network(self, config: Mapping[str, Any]) -> nn.Module:
        return _GraphNet(int(config["model"]["width"]))

    def write_samples(self, samples, out_dir: Path, *, mask=None, cond=None, prefix="sample"):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{prefix}s.pt"
        torch.save({"x": dict(samples), "mask": mask}, path)
        return [path]


def exact_denoiser(space: Any, mask: Any):
    """D(x, sigma) = STD^2 / (STD^2 + sigma^2) P x, exact for the toys' data."""

    def denoise(x, sigma):
        s = sigma.reshape(-1, *([1] * 2))
        return space.project(
            {k: v * (STD**2 / (STD**2 + s.reshape(-1, *([1] * (v.ndim - 1))) ** 2)) for k, v in x.items()}
            if isinstance(x, Mapping)
            else x * (STD**2 / (STD**2 + s**2)),
            mask,
        )

    return denoise
