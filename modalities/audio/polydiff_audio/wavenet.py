"""A non-causal WaveNet denoiser of the DiffWave family (Kong et al. 2021, §3 and Fig. 2).

Residual layers over a dilation cycle (dilation ``2 ** (i % cycle)``, kernel 3, so the receptive
field is ``1 + 2 · Σ dilations``); each layer adds its projection of the noise-level embedding,
applies the dilated convolution plus its projection of the upsampled mel spectrogram, the gated
unit tanh(·) ⊙ σ(·), and a 1×1 convolution split into a residual (added, scaled by 1/√2) and a skip
output (summed over layers, scaled by 1/√L). Unlike DiffWave's integer step embedding, the noise
level enters continuously (the core's ``c_noise``) through log-spaced Fourier features, so any
sampler and step count work without retraining. A class label adds its embedding to the
noise-level embedding (index ``num_classes`` is the null class of classifier-free guidance).

A WaveNet's receptive field is a few hundred samples, so nothing in it sees a clip's envelope (an
onset, a one-second decay, the silence after a release). The optional :class:`ContextBranch`
(``context_channels > 0``) reads the whole input at the mel frame rate: log-power spectra of
``x_in`` in frames of one hop, a stack of dilated convolutions over frames whose receptive field
covers the whole clip, the noise-level and label embedding added; its per-frame output is
interpolated to the sample rate and enters every residual layer as the mel condition does, through
a per-layer 1×1 projection. It must be trained on whole clips (``data.train_crop = 0``) to learn
what a whole clip looks like.

The parameters are DiffWave's, one module per layer as the paper draws them (the same count as the
``diffwave`` package's model at the same configuration), but :meth:`WaveNet.forward` evaluates them
in an order that makes fewer passes over ``(B, C, T)`` tensors on a CPU: 1×1 convolutions as
batched products that accumulate the residual update, the skip sum and the mel conditioner in the
product itself, biases that are constant over time folded into per-channel vectors, and the last
layer's residual half (computed and discarded by DiffWave) skipped. The tests check it against
the literal form, outputs and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContextBranch", "MelUpsampler", "WaveNet", "build_wavenet", "receptive_field"]


def receptive_field(layers: int, cycle: int, kernel: int = 3) -> int:
    """Samples of input one output sample depends on: ``1 + (kernel − 1) · Σ_i 2^(i mod cycle)``."""
    return 1 + (kernel - 1) * sum(2 ** (i % cycle) for i in range(layers))


class MelUpsampler(nn.Module):
    """``(B, n_mels, F)`` frames -> ``(B, n_mels, F · hop)``: two transposed 2-D convolutions over
    (mel, time), each stretching time by a factor whose product is ``hop`` (DiffWave's 16 × 16)."""

    def __init__(self, hop: int) -> None:
        super().__init__()
        if hop < 4 or hop & (hop - 1):
            raise ValueError(f"hop {hop}: must be a power of two >= 4")
        bits = int(math.log2(hop))
        first = 2 ** ((bits + 1) // 2)
        self.factors = (first, hop // first)
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(1, 1, (3, 2 * s), stride=(1, s), padding=(1, s // 2)) for s in self.factors
        )

    def forward(self, mel: Tensor) -> Tensor:
        x = mel.unsqueeze(1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.4)
        return x.squeeze(1)


class ContextBranch(nn.Module):
    """``(B, C, T)`` input, ``(B, E)`` embedding -> ``(B, width, T)``: long-range context computed at
    one frame per ``hop`` samples and interpolated linearly between frame centres."""

    def __init__(self, channels: int, hop: int, width: int, layers: int, embedding: int) -> None:
        super().__init__()
        self.hop = hop
        self.register_buffer("window", torch.hann_window(2 * hop), persistent=False)
        self.input = nn.Conv1d(channels * (hop + 1), width, 1)
        self.embed = nn.Linear(embedding, width)
        # dilations 1, 2, 4, …: 1 + 2·(2^layers − 1) frames, a whole clip from few layers
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 3, padding=2**i, dilation=2**i) for i in range(layers))
        self.output = nn.Conv1d(width, width, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        b, c, t = x.shape
        hop = self.hop
        padded = -(-t // hop) * hop
        wide = x.to(torch.promote_types(x.dtype, torch.float32))  # stft wants float32 or wider
        spec = torch.stft(
            F.pad(wide, (0, padded - t)).reshape(b * c, padded), 2 * hop, hop, window=self.window.to(wide.dtype),
            center=True, pad_mode="constant", return_complex=True,
        )
        # log power: the envelope and the spectrum's shape at every noise level, in one scale
        feats = torch.log(spec.real.square() + spec.imag.square() + 1e-4).to(x.dtype)
        h = self.input(feats.reshape(b, c * (hop + 1), -1)) + self.embed(emb)[:, :, None]
        for conv in self.convs:
            h = h + conv(F.silu(h))
        h = self.output(F.silu(h))
        # frame j is centred on sample j·hop: linear between centres, frame 0 at sample 0
        up = F.interpolate(h, size=padded + 1, mode="linear", align_corners=True)
        return up[..., :t]


def _fourier(c_noise: Tensor, dim: int) -> Tensor:
    # frequencies 1e-3 … 1e2, log-spaced: resolves EDM's ln(σ)/4 (|c| < 2) and VP's 999·t alike
    half = dim // 2
    freqs = torch.logspace(-3.0, 2.0, half, device=c_noise.device, dtype=torch.float32)
    arg = c_noise.float()[:, None] * freqs[None] * (2 * math.pi)
    return torch.cat([arg.sin(), arg.cos()], dim=1)


class WaveNet(nn.Module):
    """``net(x_in (B, C, T), c_noise (B,), label=(B,) | None, mel=(B, n_mels, F) | None) -> (B, C, T)``."""

    def __init__(
        self, *, channels: int = 1, residual_layers: int = 12, residual_channels: int = 32,
        dilation_cycle: int = 6, embedding_dim: int = 128, num_classes: int = 0,
        n_mels: int = 0, hop: int = 256, context_channels: int = 0, context_layers: int = 6,
    ) -> None:
        super().__init__()
        c, hidden = residual_channels, 4 * embedding_dim
        self.channels, self.layers, self.cycle = channels, residual_layers, dilation_cycle
        self.residual_channels = c
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.n_mels, self.hop = n_mels, hop
        self.input = nn.Conv1d(channels, c, 1)
        self.embed = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.label = nn.Embedding(num_classes + 1, hidden) if num_classes > 0 else None
        # every layer's projection of the embedding in one matrix product
        self.step_proj = nn.Linear(hidden, residual_layers * c)
        self.upsample = MelUpsampler(hop) if n_mels > 0 else None
        self.mel_proj = nn.ModuleList(nn.Conv1d(n_mels, 2 * c, 1) for _ in range(residual_layers)) if n_mels > 0 else None
        self.context = (
            ContextBranch(channels, hop, context_channels, context_layers, hidden) if context_channels > 0 else None
        )
        self.context_proj = (
            nn.ModuleList(nn.Conv1d(context_channels, 2 * c, 1) for _ in range(residual_layers))
            if context_channels > 0 else None
        )
        self.dilated = nn.ModuleList(
            nn.Conv1d(c, 2 * c, 3, padding=2 ** (i % dilation_cycle), dilation=2 ** (i % dilation_cycle))
            for i in range(residual_layers)
        )
        self.out_proj = nn.ModuleList(nn.Conv1d(c, 2 * c, 1) for _ in range(residual_layers))
        self.skip = nn.Conv1d(c, c, 1)
        self.output = nn.Conv1d(c, channels, 1)
        nn.init.zeros_(self.output.weight)  # the network starts as "no correction", as DiffWave's
        nn.init.zeros_(self.output.bias)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.layers, self.cycle)

    def _conditioning(self, mel: Tensor | None, batch: int, length: int, like: Tensor) -> Tensor | None:
        if self.upsample is None:
            return None
        frames = length // self.hop + 1
        if mel is None:
            mel = torch.zeros(batch, self.n_mels, frames, device=like.device, dtype=like.dtype)
        if mel.shape[1] != self.n_mels or mel.shape[2] < math.ceil(length / self.hop):
            raise ValueError(
                f"mel condition of shape {tuple(mel.shape)}: expected (B, {self.n_mels}, {frames}) "
                f"for {length} samples at hop {self.hop}"
            )
        return self.upsample(mel.to(like.dtype))[..., :length]

    def forward(self, x_in: Tensor, c_noise: Tensor, label: Tensor | None = None, mel: Tensor | None = None) -> Tensor:
        # The arithmetic of DiffWave's residual stack, rearranged so that a CPU step makes fewer
        # passes over (B, C, T) tensors (``test_audio_wavenet.py`` checks it against the literal form,
        # to rounding):
        # - the 1x1 convolutions are batched matrix products; the residual update
        #   (h + W_r g + b_r) / sqrt 2 and the skip sum  sum_i (W_s,i g_i + b_s,i) accumulate in the
        #   product itself (baddbmm's beta/alpha) instead of in separate add and scale passes;
        # - the biases b_r, b_s are constant over time: h is kept without them (``offset`` holds
        #   what they add up to, entering with the next layer's noise projection) and sum_i b_s,i
        #   joins the skip projection's bias;
        # - the mel projection accumulates into the dilated convolution's output in the product,
        #   its bias joins the dilated convolution's;
        # - the last layer's residual half, which DiffWave computes and discards, is not computed.
        b, _, t = x_in.shape
        c, layers = self.residual_channels, self.layers
        emb = self.embed(_fourier(c_noise, self.embedding_dim).to(x_in.dtype))
        if self.label is not None and label is not None:
            idx = label.long().reshape(b)
            idx = torch.where((idx < 0) | (idx >= self.num_classes), torch.full_like(idx, self.num_classes), idx)
            emb = emb + self.label(idx)
        steps = self.step_proj(emb).view(b, layers, c)
        cond = self._conditioning(mel, b, t, x_in)
        ctx = self.context(x_in, emb) if self.context is not None else None
        h = F.relu(self.input(x_in))
        offset = x_in.new_zeros(c)  # the true residual stream is h + offset
        skip: Tensor | None = None
        skip_bias = x_in.new_zeros(c)
        scale = 1.0 / math.sqrt(2.0)
        for i in range(layers):
            conv = self.dilated[i]
            bias = conv.bias if cond is None else conv.bias + self.mel_proj[i].bias
            if ctx is not None:
                bias = bias + self.context_proj[i].bias
            y = F.conv1d(h + (steps[:, i] + offset)[:, :, None], conv.weight, bias,
                         padding=conv.padding, dilation=conv.dilation)
            if cond is not None:  # + W_mel cond, accumulated in the product
                w_mel = self.mel_proj[i].weight[:, :, 0]
                y = torch.baddbmm(y, w_mel.expand(b, *w_mel.shape), cond)
            if ctx is not None:  # + W_ctx ctx, likewise
                w_ctx = self.context_proj[i].weight[:, :, 0]
                y = torch.baddbmm(y, w_ctx.expand(b, *w_ctx.shape), ctx)
            gate, filt = y.chunk(2, dim=1)
            g = torch.sigmoid(gate) * torch.tanh(filt)
            w_out, b_out = self.out_proj[i].weight[:, :, 0], self.out_proj[i].bias
            w_skip = w_out[c:].expand(b, c, c)
            skip = torch.matmul(w_skip, g) if skip is None else torch.baddbmm(skip, w_skip, g)
            skip_bias = skip_bias + b_out[c:]
            if i < layers - 1:
                h = torch.baddbmm(h, w_out[:c].expand(b, c, c), g, beta=scale, alpha=scale)
                offset = (offset + b_out[:c]) * scale
        assert skip is not None
        # relu(W_p (skip + skip_bias) / sqrt L + b_p), the bias folded through W_p
        w_p = self.skip.weight[:, :, 0]
        norm = 1.0 / math.sqrt(layers)
        bias_p = self.skip.bias + (w_p @ skip_bias) * norm
        out = F.relu(torch.baddbmm(bias_p[None, :, None], w_p.expand(b, c, c), skip, alpha=norm))
        return self.output(out)


def build_wavenet(model: Mapping[str, Any], data: Mapping[str, Any], num_classes: int, channels: int = 1) -> WaveNet:
    """The network a run's ``model`` and ``data`` sections describe."""
    if int(model["embedding_dim"]) % 2:
        from polydiff.errors import UserError

        # half sines, half cosines of the noise level
        raise UserError(f"model.embedding_dim = {model['embedding_dim']}: must be even")
    return WaveNet(
        channels=channels,
        residual_layers=int(model["residual_layers"]),
        residual_channels=int(model["residual_channels"]),
        dilation_cycle=int(model["dilation_cycle"]),
        embedding_dim=int(model["embedding_dim"]),
        num_classes=int(num_classes),
        n_mels=int(data["n_mels"]) if model.get("mel") else 0,
        hop=int(data["hop_length"]),
        context_channels=int(model.get("context_channels", 0)),
        context_layers=int(model.get("context_layers", 6)),
    )
