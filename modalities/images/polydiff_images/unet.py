"""A small U-Net for score-based diffusion on images.

``UNet(x, c_noise, label=None) -> tensor shaped like x``. The noise level ``c_noise`` (B,) is
turned into sinusoidal features, passed through an MLP and injected into every residual block as a
per-channel scale and shift after its second normalisation (the adaptive GroupNorm of Dhariwal &
Nichol 2021). The encoder stores its activations and the decoder concatenates them back (skip
connections); self-attention runs at the levels listed in ``attention_levels`` (the lowest one by
default) and in the middle. The output convolution starts at zero, so a fresh network outputs 0
and the EDM denoiser starts as ``c_skip * x``.

Shapes: ``x`` (B, C, H, W) with H and W divisible by ``2 ** (len(channel_mult) - 1)``.

Memory format: cuDNN convolutions run faster in channels-last order, so by default
(``channels_last="auto"``) the network keeps its 4-D weights channels-last whenever it is moved to a
GPU, and converts its input likewise; the trainer leaves memory formats to the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _groups(channels: int, wanted: int) -> int:
    """The largest group count <= ``wanted`` that divides ``channels``."""
    g = max(1, min(wanted, channels))
    while channels % g:
        g -= 1
    return g


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of a scalar noise input: ``(B,) -> (B, dim)``.

    Frequencies are geometric from 1 down to ``1 / max_period`` (Vaswani et al. 2017), multiplied by
    ``scale``; EDM's c_noise = log(sigma)/4 spans a few units, VP's 999 t spans a thousand.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0, scale: float = 1.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise.to(torch.float32).reshape(-1, 1) * self.freqs.reshape(1, -1)
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    """GN-SiLU-conv, GN with scale-shift from the embedding, SiLU-dropout-conv; plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch, groups), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, pre-norm, zero-initialised projection."""

    def __init__(self, channels: int, groups: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            self.heads = 1
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv (which may narrow to the next level's width)."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """U-Net ``net(x, c_noise, label=None)`` for images of shape (B, in_channels, H, W).

    ``num_classes > 0`` adds a label embedding with ``num_classes + 1`` rows; row ``num_classes``
    is the null (unconditional) class, used when ``label`` is ``None`` or negative (the core's
    "no condition" value, for classifier-free guidance and condition dropout). With
    ``num_classes == 0`` labels are accepted and ignored.

    ``channels_last``: ``"auto"`` (channels-last on CUDA), ``True`` (on every device) or ``False``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        base_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_blocks: int = 1,
        attention_levels: Sequence[int] | None = None,
        attention_head_dim: int = 32,
        emb_mult: int = 4,
        norm_groups: int = 8,
        dropout: float = 0.0,
        num_classes: int = 0,
        noise_max_period: float = 10_000.0,
        noise_scale: float = 1.0,
        channels_last: bool | str = "auto",
    ):
        super().__init__()
        if not isinstance(channels_last, bool) and str(channels_last).lower() != "auto":
            raise ValueError(f'channels_last = {channels_last!r}: expected true, false or "auto"')
        self.channels_last = channels_last if isinstance(channels_last, bool) else "auto"
        out_channels = in_channels if out_channels is None else out_channels
        levels = len(channel_mult)
        if levels < 1 or num_blocks < 1:
            raise ValueError("channel_mult needs at least one level and num_blocks must be >= 1")
        if attention_levels is None:
            attention_levels = (levels - 1,)
        attention_levels = {lv % levels for lv in attention_levels}
        self.num_classes = int(num_classes)
        self.levels = levels
        emb_dim = base_channels * emb_mult

        self.noise_features = NoiseEmbedding(base_channels, noise_max_period, noise_scale)
        self.noise_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.label_emb = (
            nn.Embedding(self.num_classes + 1, emb_dim) if self.num_classes > 0 else None
        )
        self.emb_act = nn.SiLU()

        def block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, norm_groups, dropout)

        def attention(ch: int) -> SelfAttention:
            return SelfAttention(ch, norm_groups, attention_head_dim)

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch = base_channels
        for level, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_blocks):
                layers = [block(ch, out)]
                ch = out
                if level in attention_levels:
                    layers.append(attention(ch))
                self.down.append(nn.ModuleList(layers))
                skip_channels.append(ch)
            if level < levels - 1:
                self.down.append(nn.ModuleList([Downsample(ch)]))
                skip_channels.append(ch)

        self.middle = nn.ModuleList([block(ch, ch), attention(ch), block(ch, ch)])

        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            out = base_channels * channel_mult[level]
            for _ in range(num_blocks + 1):
                layers = [block(ch + skip_channels.pop(), out)]
                ch = out
                if level in attention_levels:
                    layers.append(attention(ch))
                self.up.append(nn.ModuleList(layers))
            if level > 0:
                # narrowing here keeps the high-resolution convolutions cheap
                out = base_channels * channel_mult[level - 1]
                self.up.append(nn.ModuleList([Upsample(ch, out)]))
                ch = out

        self.norm_out = nn.GroupNorm(_groups(ch, norm_groups), ch)
        self.conv_out = _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        self._apply(lambda t: t)  # the memory format for the device it was built on

    def uses_channels_last(self, device: torch.device) -> bool:
        """Whether the network keeps weights and inputs channels-last on ``device``."""
        if self.channels_last == "auto":
            return device.type == "cuda"
        return bool(self.channels_last)

    def _apply(self, fn: Any, recurse: bool = True) -> UNet:
        # every move between devices (.to, .cuda, .cpu) goes through here: the one place where the
        # weights can take the memory format that suits the new device, before an optimizer or
        # DistributedDataParallel records their layout
        super()._apply(fn, recurse)
        fmt = (
            torch.channels_last
            if self.uses_channels_last(self.conv_in.weight.device)
            else torch.contiguous_format
        )
        return super()._apply(
            lambda t: t.contiguous(memory_format=fmt) if t.ndim == 4 else t, recurse
        )

    def embed(self, c_noise: Tensor, label: Tensor | None, batch: int) -> Tensor:
        c_noise = c_noise.reshape(-1)
        if c_noise.numel() == 1 and batch > 1:
            c_noise = c_noise.expand(batch)
        emb = self.noise_mlp(self.noise_features(c_noise))
        if self.label_emb is not None:
            if label is None:
                label = torch.full((batch,), self.num_classes, dtype=torch.long, device=emb.device)
            label = label.reshape(-1).long()
            if label.numel() == 1 and batch > 1:
                label = label.expand(batch)
            label = torch.where(label < 0, torch.full_like(label, self.num_classes), label)
            emb = emb + self.label_emb(label)
        return self.emb_act(emb)

    def forward(self, x: Tensor, c_noise: Tensor, label: Tensor | None = None) -> Tensor:
        emb = self.embed(c_noise, label, x.shape[0])
        if self.uses_channels_last(x.device):
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(x)
        skips = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)
            for layer in layers:
                h = layer(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


#: keys of ``config["model"]`` that :func:`build_unet` forwards to :class:`UNet`
UNET_KEYS = (
    "base_channels",
    "channel_mult",
    "num_blocks",
    "attention_levels",
    "attention_head_dim",
    "emb_mult",
    "norm_groups",
    "dropout",
    "num_classes",
    "noise_max_period",
    "noise_scale",
    "channels_last",
)


def build_unet(model_config: Mapping[str, Any], in_channels: int = 1) -> UNet:
    """A :class:`UNet` from a ``model`` config section (unknown keys are an error)."""
    cfg = dict(model_config)
    cfg.pop("name", None)
    unknown = sorted(set(cfg) - set(UNET_KEYS))
    if unknown:
        raise ValueError(
            f"unknown model option(s) {', '.join(unknown)}; available: {', '.join(UNET_KEYS)}"
        )
    for key in ("channel_mult", "attention_levels"):
        if cfg.get(key) is not None:
            cfg[key] = tuple(int(v) for v in cfg[key])
    return UNet(in_channels=in_channels, **cfg)
