"""A point transformer denoiser in the style of Zhao et al. 2021 ("Point Transformer", ICCV).

Per-point embedding; one k-NN graph of the noisy input shared by every block. Each block

1. conditions on the noise level by modulating its layer norms (scale and shift from the noise
   embedding, as DiT's adaptive layer norm);
2. runs vector self-attention with a relative-position encoding over each point's neighbourhood
   (paper eq. 3-4, one weight per group of channels):

       y_i = sum_j softmax_j( gamma(phi(h_i) - psi(h_j) + delta_ij) ) * (alpha(h_j) + delta_ij),
       delta_ij = theta(p_i - p_j);

3. mixes a global context channel into every point: PointNet's max and mean pooling of the
   features (a shape descriptor), and optionally ``latents`` learned queries that read the whole
   cloud by cross-attention and that every point then reads back (set attention with inducing
   points, Lee et al. 2019);
4. a point-wise MLP.

A class label (``model.num_classes``) adds a learned embedding to the noise level's, so it
conditions every block the same way.

Why the global path: at the noise levels that decide a shape's layout the noisy points' k-NN
neighbourhoods hold no geometry, so local attention alone cannot say where a point belongs; a mean
alone (our first design) blurs the shape descriptor, and the model learned blobs. Every operation is
per point or a symmetric reduction over points, so the network is permutation equivariant. Ragged
batches: the ``valid`` mask keeps padded points out of every neighbourhood, pooling and attention,
and their output is 0.

k-NN is ``torch.cdist`` + ``topk``, chunked over query points so a 2,048-point cloud needs only
``chunk x N`` distances at a time (no torch-cluster or pytorch3d needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["NoiseEmbedding", "PointTransformer", "build_network", "gather_neighbours", "knn"]


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


def _masked_max(h: Tensor, mask: Tensor) -> Tensor:
    m = h.masked_fill(mask[..., None] <= 0, torch.finfo(h.dtype).min).amax(1)
    return torch.where(mask.sum(1, keepdim=True) > 0, m, torch.zeros_like(m))  # an empty cloud: 0


class NoiseEmbedding(nn.Module):
    """Sines and cosines of the noise-level input at geometrically spaced frequencies.

    EDM's ``c_noise = ln(sigma) / 4`` spans about [-1.6, 1.1]; frequencies from a quarter to eight
    cycles per unit resolve it without the high-frequency features random Fourier features of
    scale 16 add, which a short run cannot learn to ignore.
    """

    def __init__(self, dim: int, low: float = 0.25, high: float = 8.0):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(math.log10(low), math.log10(high), dim // 2))

    def forward(self, c: Tensor) -> Tensor:
        a = c.float()[:, None] * self.freqs[None] * 2 * math.pi
        return torch.cat([a.cos(), a.sin()], dim=1)


class LatentAttention(nn.Module):
    """``latents`` learned queries read the cloud (cross-attention over its valid points), think
    (an MLP), and every point reads them back: global attention at ``O(N x latents)``."""

    def __init__(self, width: int, latents: int, heads: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, width) * 0.02)
        self.norm_points = nn.LayerNorm(width)
        self.norm_latents = nn.LayerNorm(width)
        self.read = nn.MultiheadAttention(width, heads, batch_first=True)
        self.think = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(),
                                   nn.Linear(2 * width, width))
        self.write = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, h: Tensor, mask: Tensor, temb: Tensor) -> Tensor:
        pad = mask <= 0
        pad = pad & ~pad.all(1, keepdim=True)  # an all-padding cloud attends to its (zeroed) points
        hp = self.norm_points(h)
        lat = self.latents[None] + temb[:, None]
        q = self.norm_latents(lat)
        lat = lat + self.read(q, hp, hp, key_padding_mask=pad, need_weights=False)[0]
        lat = lat + self.think(lat)
        return self.write(hp, lat, lat, need_weights=False)[0]


class PointTransformerBlock(nn.Module):
    """Noise-modulated grouped vector attention over k-NN, global context, point-wise MLP.

    The attention weights are per group of ``width // groups`` channels (PTv2's grouped vector
    attention; ``groups = width`` is the paper's per-channel form): on CPUs the per-neighbour
    tensors dominate the cost, and this keeps the widest of them to one ``(B, N, k, width)``.
    """

    def __init__(self, width: int, groups: int = 8, hidden: int = 16, latents: int = 0, heads: int = 4):
        super().__init__()
        if width % groups:
            raise ValueError(f"model.width ({width}) must be a multiple of model.groups ({groups})")
        self.groups, self.hidden = groups, hidden
        # adaptive layer norm: scale and shift of both norms from the noise level, identity at init
        self.modulation = nn.Linear(width, 4 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        # queries and keys at a narrow width: only their per-neighbour difference is formed
        self.qkv = nn.Linear(width, 2 * hidden + width)
        self.pos = nn.Sequential(nn.Linear(3, hidden), nn.SiLU())
        self.pos_key = nn.Linear(hidden, hidden)  # theta of the attention logits
        self.pos_value = nn.Linear(hidden, width)  # theta added to the values
        self.gamma = nn.Sequential(nn.SiLU(), nn.Linear(hidden, groups))
        self.proj = nn.Linear(width, width)
        # the global context: max and mean pooling of a projection, through an MLP, to every point
        self.pool_norm = nn.LayerNorm(width)
        self.pool_in = nn.Linear(width, width)
        self.pool_out = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
        self.latent = LatentAttention(width, latents, heads) if latents > 0 else None
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def attend(self, h: Tensor, rel: Tensor, idx: Tensor, nb_valid: Tensor) -> Tensor:
        """The vector self-attention over each point's neighbourhood (the module docstring)."""
        q, k, v = self.qkv(h).split([self.hidden, self.hidden, h.shape[-1]], dim=-1)
        r = self.pos(rel)  # (B, N, k, hidden)
        logits = self.gamma(q[:, :, None] - gather_neighbours(k, idx) + self.pos_key(r))
        logits = logits.masked_fill(nb_valid[..., None] <= 0, -1e4)
        weights = logits.softmax(dim=2)  # (B, N, k, G)
        values = gather_neighbours(v, idx) + self.pos_value(r)
        b, n, kk, c = values.shape
        y = (weights[..., None] * values.view(b, n, kk, self.groups, c // self.groups)).sum(2)
        return self.proj(y.reshape(b, n, c))

    def forward(self, h: Tensor, rel: Tensor, idx: Tensor, nb_valid: Tensor, temb: Tensor,
                mask: Tensor) -> Tensor:
        scale1, shift1, scale2, shift2 = self.modulation(temb)[:, None].chunk(4, dim=-1)
        h = h + self.attend(self.norm1(h) * (1 + scale1) + shift1, rel, idx, nb_valid)
        z = self.pool_in(self.pool_norm(h))
        h = h + self.pool_out(torch.cat([_masked_max(z, mask), _masked_mean(z, mask)], dim=-1))[:, None]
        if self.latent is not None:
            h = h + self.latent(h, mask, temb)
        return h + self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class PointTransformer(nn.Module):
    """The denoiser network: ``forward(x (B, N, 3), c_noise (B,), valid=(B, N)) -> (B, N, 3)``."""

    def __init__(self, width: int = 64, blocks: int = 3, k: int = 16, knn_chunk: int = 1024,
                 groups: int = 8, latents: int = 0, heads: int = 4, num_classes: int = 0):
        super().__init__()
        self.num_classes = int(num_classes)
        self.k, self.knn_chunk = int(k), int(knn_chunk)
        self.embed = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width))
        self.noise = nn.Sequential(NoiseEmbedding(width), nn.Linear(width, width), nn.SiLU(),
                                   nn.Linear(width, width))
        # a class label adds its embedding to the noise level's (row num_classes: no label, for
        # condition dropout and guidance); zero at the start, so training starts unconditional
        self.label = nn.Embedding(self.num_classes + 1, width) if self.num_classes > 0 else None
        if self.label is not None:
            nn.init.zeros_(self.label.weight)
        self.blocks = nn.ModuleList(PointTransformerBlock(width, groups, latents=latents, heads=heads)
                                    for _ in range(blocks))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, valid: Tensor | None = None,
                label: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        mask = torch.ones(b, n, device=x.device, dtype=x.dtype) if valid is None else valid.to(x.dtype)
        idx = knn(x.detach(), mask, self.k, self.knn_chunk)
        rel = x[:, :, None, :] - gather_neighbours(x, idx)
        nb_valid = gather_neighbours(mask[..., None], idx)[..., 0]
        temb = self.noise(c_noise.reshape(-1).expand(b))
        if self.label is not None:  # no label: the null row, the model's unconditional score
            lab = torch.full((b,), -1, device=x.device) if label is None else label.long().reshape(b)
            lab = torch.where((lab < 0) | (lab >= self.num_classes), torch.full_like(lab, self.num_classes), lab)
            temb = temb + self.label(lab)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, rel, idx, nb_valid, temb, mask)
        return self.out(self.norm(h)) * mask[..., None]


def build_network(config: Mapping[str, Any], num_classes: int = 0) -> PointTransformer:
    from polydiff.errors import UserError
    from polydiff_points.defaults import DEFAULT_CONFIG

    m = {**DEFAULT_CONFIG["model"], **(config.get("model") or {})}
    width, groups, heads = int(m["width"]), int(m["groups"]), int(m["heads"])
    # config values, checked before any run folder is made: one line, not a traceback
    if groups < 1 or width % groups:
        raise UserError(f"model.groups = {m['groups']}: must divide model.width = {m['width']}")
    if int(m["latents"]) > 0 and (heads < 1 or width % heads):
        raise UserError(f"model.heads = {m['heads']}: must divide model.width = {m['width']}")
    return PointTransformer(width, int(m["blocks"]), int(m["k"]), int(m["knn_chunk"]), groups,
                            int(m["latents"]), heads, num_classes)
