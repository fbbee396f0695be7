"""Data, network and writer of the curves modality."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polydiff.protocol import DataError


class Curves(torch.utils.data.Dataset):
    def __init__(self, values: torch.Tensor):
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.values[i][None]}


def _waves(n: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length)
    freq = torch.randint(1, 4, (n, 2), generator=g).float()
    phase = torch.rand(n, 2, generator=g) * 2 * math.pi
    amp = torch.tensor([0.6, 0.3])
    return (amp * torch.sin(2 * math.pi * freq[:, None, :] * t[None, :, None] + phase[:, None, :])).sum(-1)


def build_dataset(source, config, split) -> Curves:
    data = config["data"]
    if str(source) == "waves":
        n = int(data["size"])
        return Curves(_waves(n, int(data["length"]), seed=0 if split == "train" else 1))
    path = Path(source)
    if path.suffix != ".npy":
        raise DataError(f"{path}: expected a .npy array of shape (N, L)")
    try:
        arr = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable .npy file ({exc})") from None
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise DataError(f"{path}: expected a finite array of shape (N, L), got shape {arr.shape}")
    return Curves(torch.as_tensor(arr, dtype=torch.float32))


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, width)
        self.conv = nn.Conv1d(width, width, 5, padding=2)
        self.emb = nn.Linear(width, 2 * width)

    def forward(self, h, emb):
        scale, shift = self.emb(emb)[..., None].chunk(2, dim=1)
        return h + self.conv(nn.functional.silu(self.norm(h) * (1 + scale) + shift))


class CurveNet(nn.Module):
    def __init__(self, width: int = 64, blocks: int = 4):
        super().__init__()
        self.freqs = nn.Parameter(torch.randn(width // 2) * 4, requires_grad=False)
        self.embed = nn.Sequential(nn.Linear(width, width), nn.SiLU())
        self.inp = nn.Conv1d(1, width, 5, padding=2)
        self.blocks = nn.ModuleList(Block(width) for _ in range(blocks))
        self.out = nn.Conv1d(width, 1, 5, padding=2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, c_noise):
        f = c_noise[:, None] * self.freqs[None]
        emb = self.embed(torch.cat([f.sin(), f.cos()], dim=1))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


def write_curves(samples: torch.Tensor, out_dir: Path, prefix: str) -> list[Path]:
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = samples[:, 0].float().numpy()
    csv = out_dir / f"{prefix}s.csv"
    np.savetxt(csv, values, delimiter=",", fmt="%.5f")
    w, h = 640, 60 * len(values)
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    for i, row in enumerate(values):
        xs = np.linspace(0, w - 1, len(row))
        ys = 60 * i + 30 - 25 * np.clip(row, -1.2, 1.2)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(30, 60, 200), width=2)
    png = out_dir / f"{prefix}s.png"
    img.save(png)
    return [png, csv]
