"""A point transformer denoiser in the style of Zhao et al. 2021 ("Point Transformer", ICCV).

Per-point embedding; one k-NN graph of the noisy input shared by every block; in each block the
noise level is added to every point's features, a global context vector (the masked mean of the
features) is mixed back into every point, and vector self-attention with a relative-position
encoding runs over each point's neighbourhood (paper eq. 3-4):

    y_i = sum_j softmax_j( gamma(phi(h_i) - psi(h_j) + delta_ij) ) * (alpha(h_j) + delta_ij),
    delta_ij = theta(p_i - p_j)

with a weight per channel (vector attention, not one scalar per pair), followed by a point-wise MLP.
Every operation is per point or a symmetric reduction over points, so the network is permutation
equivariant. Ragged batches: the ``valid`` mask keeps padded points out of every neighbourhood and
out of the global context, and their output is 0.

k-NN is ``torch.cdist`` + ``topk``, chunked over query points so a 2,048-point cloud needs only
``chunk x N`` distances at a time (no torch-cluster or pytorch3d needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PointTransformer", "build_network", "gather_neighbours", "knn"]


def knn(x: Tensor, mask: Tensor | None, k: int, chunk: int = 1024) -> Tensor:
    """Indices ``(B, N, k)`` of each point's ``k`` nearest valid points (itself included).

    ``x``: ``(B, N, D)``; ``mask``: ``(B, N)``, 1 at valid points, or None. Where a cloud has fewer
    than ``k`` valid points the surplus indices point at padding, which the network masks out.
    """
    b, n, _ = x.shape
    k = min(k, n)
    out = []
    invalid = None if mask is None else (mask <= 0)[:, None, :]
    with torch.no_grad():  # neighbourhoods are a discrete choice; no gradient flows through them
        for start in range(0, n, max(1, chunk)):
            q = x[:, start:start + chunk]
            d = torch.cdist(q, x)
            if invalid is not None:
                d = d.masked_fill(invalid, float("inf"))
            out.append(d.topk(k, dim=-1, largest=False).indices)
    return torch.cat(out, dim=1)


def gather_neighbours(f: Tensor, idx: Tensor) -> Tensor:
    """``f`` ``(B, N, C)`` at ``idx`` ``(B, N, k)`` -> ``(B, N, k, C)``."""
    b, n, c = f.shape
    offset = (torch.arange(b, device=f.device) * n).view(b, 1, 1)
    return f.reshape(b * n, c)[(idx + offset).reshape(-1)].reshape(*idx.shape, c)


def _masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    w = mask[..., None].to(h.dtype)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class FourierNoise(nn.Module):
    """Random Fourier features of the noise-level input (fixed frequencies, EDM's scale 16)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c: Tensor) -> Tensor:
        a = c.float()[:, None] * self.freqs[None] * 2 * math.pi
        return torch.cat([a.cos(), a.sin()], dim=1)


class PointTransformerBlock(nn.Module):
    """Noise conditioning, global context, grouped vector attention over k-NN, point-wise MLP.

    The attention weights are per group of ``width // groups`` channels (PTv2's grouped vector
    attention; ``groups = width`` is the paper's per-channel form): on CPUs the per-neighbour
    tensors dominate the cost, and this keeps the widest of them to one ``(B, N, k, width)``.
    """

    def __init__(self, width: int, groups: int = 8, hidden: int = 16):
        super().__init__()
        if width % groups:
            raise ValueError(f"model.width ({width}) must be a multiple of model.groups ({groups})")
        self.groups, self.hidden = groups, hidden
        self.noise = nn.Linear(width, width)
        self.context = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width)
        # queries and keys at a narrow width: only their per-neighbour difference is formed
        self.qkv = nn.Linear(width, 2 * hidden + width)
        self.pos = nn.Sequential(nn.Linear(3, hidden), nn.SiLU())
        self.pos_key = nn.Linear(hidden, hidden)  # theta of the attention logits
        self.pos_value = nn.Linear(hidden, width)  # theta added to the values
        self.gamma = nn.Sequential(nn.SiLU(), nn.Linear(hidden, groups))
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: Tensor, rel: Tensor, idx: Tensor, nb_valid: Tensor, temb: Tensor,
                mask: Tensor) -> Tensor:
        h = h + self.noise(temb)[:, None]
        h = h + self.context(_masked_mean(h, mask))[:, None]
        q, k, v = self.qkv(self.norm1(h)).split([self.hidden, self.hidden, h.shape[-1]], dim=-1)
        r = self.pos(rel)  # (B, N, k, hidden)
        logits = self.gamma(q[:, :, None] - gather_neighbours(k, idx) + self.pos_key(r))
        logits = logits.masked_fill(nb_valid[..., None] <= 0, -1e4)
        weights = logits.softmax(dim=2)  # (B, N, k, G)
        values = gather_neighbours(v, idx) + self.pos_value(r)
        b, n, kk, c = values.shape
        y = (weights[..., None] * values.view(b, n, kk, self.groups, c // self.groups)).sum(2)
        h = h + self.proj(y.reshape(b, n, c))
        return h + self.mlp(self.norm2(h))


class PointTransformer(nn.Module):
    """The denoiser network: ``forward(x (B, N, 3), c_noise (B,), valid=(B, N)) -> (B, N, 3)``."""

    def __init__(self, width: int = 64, blocks: int = 3, k: int = 16, knn_chunk: int = 1024,
                 groups: int = 8):
        super().__init__()
        self.k, self.knn_chunk = int(k), int(knn_chunk)
        self.embed = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width))
        self.noise = nn.Sequential(FourierNoise(width), nn.Linear(width, width), nn.SiLU(),
                                   nn.Linear(width, width))
        self.blocks = nn.ModuleList(PointTransformerBlock(width, groups) for _ in range(blocks))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, valid: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        mask = torch.ones(b, n, device=x.device, dtype=x.dtype) if valid is None else valid.to(x.dtype)
        idx = knn(x.detach(), mask, self.k, self.knn_chunk)
        rel = x[:, :, None, :] - gather_neighbours(x, idx)
        nb_valid = gather_neighbours(mask[..., None], idx)[..., 0]
        temb = self.noise(c_noise.reshape(-1).expand(b))
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, rel, idx, nb_valid, temb, mask)
        return self.out(self.norm(h)) * mask[..., None]


def build_network(config: Mapping[str, Any]) -> PointTransformer:
    from polydiff.errors import UserError
    from polydiff_points.defaults import DEFAULT_CONFIG

    m = {**DEFAULT_CONFIG["model"], **(config.get("model") or {})}
    if int(m["groups"]) < 1 or int(m["width"]) % int(m["groups"]):
        # a config value, checked before any run folder is made: one line, not a traceback
        raise UserError(f"model.groups = {m['groups']}: must divide model.width = {m['width']}")
    return PointTransformer(int(m["width"]), int(m["blocks"]), int(m["k"]), int(m["knn_chunk"]), int(m["groups"]))
