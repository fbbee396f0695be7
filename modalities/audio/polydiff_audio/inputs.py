"""Inputs of `polydiff sample`: a clip to inpaint, the span to regenerate, a file to vocode.

``--inpaint clip.wav --mask 0.4:0.6`` regenerates the part of the clip between 40 % and 60 % of
its length (``--mask 0.4s:0.6s`` gives the span in seconds); ``--cond mel=speech.wav`` conditions
a mel-conditioned model on the log-mel spectrogram of the file's first clip length. Files are
read like training data (mono, resampled, loudness-normalised, cut or zero-padded to the clip).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polydiff.protocol import DataError
from polydiff_audio.audio_io import (
    clip_length,
    data_config,
    fit_length,
    load_mono,
    log_mel,
    normalise_loudness,
)

__all__ = ["read_clip", "read_mask", "read_mel"]


def read_clip(path: Path, config: Mapping[str, Any]) -> Tensor:
    """The ``(1, L)`` clip of a file, preprocessed like a training item."""
    data = data_config(config)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    wave = normalise_loudness(load_mono(path, int(data["sample_rate"])), float(data["loudness_rms"]))
    return fit_length(wave, clip_length(data))[0]


def _position(text: str, length: int, rate: int, spec: str) -> int:
    text = text.strip()
    try:
        if text.endswith("s"):
            return round(float(text[:-1]) * rate)
        value = float(text)
    except (ValueError, OverflowError):  # "infs": round(inf) overflows
        raise DataError(f"--mask {spec}: expected START:END as fractions (0.4:0.6) or seconds (0.4s:0.6s)") from None
    if not 0.0 <= value <= 1.0:
        raise DataError(f"--mask {spec}: fractions must lie in [0, 1] (add 's' for seconds)")
    return round(value * length)


def read_mask(spec: str, config: Mapping[str, Any], like: Tensor) -> Tensor:
    """``like``-shaped ``(C, T)`` known mask (1 = keep) with the span ``START:END`` set to 0."""
    data = data_config(config)
    length = like.shape[-1]
    parts = spec.split(":")
    if len(parts) != 2:
        raise DataError(f"--mask {spec}: expected START:END, e.g. 0.4:0.6 or 0.4s:0.6s")
    start, end = (_position(p, length, int(data["sample_rate"]), spec) for p in parts)
    start, end = max(0, start), min(length, end)
    if end <= start:
        raise DataError(f"--mask {spec}: the span to regenerate is empty within the {length}-sample clip")
    keep = torch.ones(1, length)
    keep[:, start:end] = 0.0
    return keep.expand(like.shape[0], length).contiguous()


def read_mel(spec: str, config: Mapping[str, Any], n: int) -> Tensor:
    """``(n, n_mels, F)``: the normalised log-mel of the first clip of an audio file, per sample."""
    mel = log_mel(read_clip(Path(spec), config)[0], data_config(config))
    return mel.unsqueeze(0).expand(n, *mel.shape).contiguous()
