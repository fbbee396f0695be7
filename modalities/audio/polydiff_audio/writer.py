"""Writing audio samples: a 16-bit WAV per sample, a log-mel PNG of each and a grid of all.

A mel-conditioned run (vocoding) also shows the conditioning spectrogram beside each output in
the grid (input | output per row). Every file goes through :func:`polydiff.atomic.atomic_write`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.atomic import atomic_write_bytes
from polydiff_audio.audio_io import log_mel, write_wav

__all__ = ["colourise", "spectrogram_png", "write_inpainting", "write_samples"]

# anchors of a dark-to-bright colour map (black, purple, red, orange, pale yellow)
_ANCHORS = np.array(
    [[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float64
)


def colourise(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 through the anchor colour map."""
    v = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (v - lo)[..., None]
    rgb = _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac
    return rgb.round().astype(np.uint8)


def _mel_image(mel: Tensor, scale: int = 2) -> np.ndarray:
    """Normalised ``(n_mels, F)`` log-mel -> RGB with low frequencies at the bottom."""
    img = colourise(mel.detach().cpu().numpy()[::-1])
    return img.repeat(scale, axis=0).repeat(scale, axis=1)


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def spectrogram_png(path: Path, mel: Tensor) -> None:
    atomic_write_bytes(Path(path), _png_bytes(_mel_image(mel)))


def _tile(images: list[np.ndarray], ncols: int, pad: int = 2) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = math.ceil(len(images) / ncols)
    grid = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + img.shape[0], x : x + img.shape[1]] = img
    return grid


def _valid_lengths(samples: Tensor, mask: Any) -> list[int]:
    if mask is None:
        return [samples.shape[-1]] * samples.shape[0]
    m = torch.as_tensor(mask).detach().cpu()
    return [int(m[i].reshape(-1, m.shape[-1]).amax(0).sum()) for i in range(m.shape[0])]


def write_samples(
    samples: Any, out_dir: str | Path, data: Mapping[str, Any], *, mask: Any = None,
    cond: Mapping[str, Any] | None = None, prefix: str = "sample",
) -> list[Path]:
    """``<prefix>_grid.png``, then ``<prefix>_NNNN.wav`` and ``<prefix>_NNNN.png`` per sample.

    ``samples``: ``(B, C, T)`` in [-1, 1] (clipped); ``mask`` trims padded tails; a non-null
    ``cond["mel"]`` puts the conditioning spectrogram beside each output in the grid."""
    x = torch.as_tensor(samples).detach().float().cpu()
    if x.dim() == 2:
        x = x.unsqueeze(0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rate = int(data["sample_rate"])
    lengths = _valid_lengths(x, mask)
    mel_in = None if not cond or cond.get("mel") is None else torch.as_tensor(cond["mel"]).detach().cpu()
    width = max(4, len(str(len(x) - 1)))
    paths: list[Path] = []
    tiles: list[np.ndarray] = []
    for i in range(len(x)):
        wave = x[i, :, : lengths[i]].clamp(-1.0, 1.0)
        wav_path = out / f"{prefix}_{i:0{width}d}.wav"
        write_wav(wav_path, wave, rate)
        mel = log_mel(wave.mean(0), data)
        png_path = out / f"{prefix}_{i:0{width}d}.png"
        spectrogram_png(png_path, mel)
        paths += [wav_path, png_path]
        if mel_in is not None and float(mel_in[i].abs().sum()) > 0:
            tiles += [_mel_image(mel_in[i][:, : mel.shape[1]]), _mel_image(mel)]
        else:
            tiles.append(_mel_image(mel))
    pairs = mel_in is not None and len(tiles) == 2 * len(x)
    ncols = 2 if pairs else max(1, math.ceil(math.sqrt(len(tiles))))
    grid_path = out / f"{prefix}_grid.png"
    atomic_write_bytes(grid_path, _png_bytes(_tile(tiles, ncols)))
    return [grid_path, *paths]


def write_inpainting(
    samples: Any, values: Any, known_mask: Any, out_dir: str | Path, data: Mapping[str, Any],
    *, prefix: str = "inpaint",
) -> list[Path]:
    """``<prefix>_panel.png`` (input with the gap silenced, then each completion, one per row, the
    gap framed in white), ``<prefix>_input.wav`` (the gapped input) and the completions."""
    x = torch.as_tensor(samples).detach().float().cpu()
    v = torch.as_tensor(values).detach().float().cpu()
    keep = torch.as_tensor(known_mask).detach().float().cpu()
    keep = keep.expand_as(v) if keep.shape != v.shape else keep
    gapped = v[0] * keep[0]
    out = Path(out_dir)
    paths = write_samples(x, out, data, prefix=prefix)
    input_path = out / f"{prefix}_input.wav"
    write_wav(input_path, gapped, int(data["sample_rate"]))
    hop = int(data["hop_length"])
    gap = (keep[0].amin(0) < 0.5).numpy()
    frames = np.zeros(x.shape[-1] // hop + 1, dtype=bool)
    idx = np.nonzero(gap)[0]
    if len(idx):
        frames[idx[0] // hop : idx[-1] // hop + 1] = True
    tiles = []
    for wave in [gapped, *x[:8]]:
        img = _mel_image(log_mel(wave.mean(0), data), scale=2)
        cols = np.repeat(frames, 2)[: img.shape[1]]
        edges = np.nonzero(np.diff(cols.astype(int)))[0]
        for e in edges:  # white lines at the borders of the regenerated span
            img[:, max(0, e - 1) : e + 1] = 255
        tiles.append(img)
    panel = out / f"{prefix}_panel.png"
    atomic_write_bytes(panel, _png_bytes(_tile(tiles, 1)))
    return [panel, input_path, *paths]
