"""Audio files in and out, and the log-mel spectrogram every part of the plugin shares.

Files are read with ``soundfile`` (its wheel bundles libsndfile: WAV, FLAC, OGG/Vorbis, AIFF);
torchaudio serves only as a library of transforms (resampling, mel filterbanks), since its own
load/save need torchcodec. Samples are written as 16-bit PCM WAV through
:func:`polydiff.atomic.atomic_write`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.atomic import atomic_write
from polydiff.protocol import DataError
from polydiff_audio.defaults import DEFAULT_CONFIG

__all__ = [
    "AUDIO_SUFFIXES",
    "data_config",
    "fit_length",
    "load_mono",
    "log_mel",
    "mel_amplitude",
    "normalise_loudness",
    "write_wav",
]

#: file suffixes a folder data set reads (anything else in the folder is ignored)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")


def data_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ``data`` section over the plugin's defaults, checked where a bad value would only
    fail deep inside a transform."""
    from polydiff.errors import UserError

    data = dict(DEFAULT_CONFIG["data"])
    data.update((config or {}).get("data") or {})
    hop = int(data["hop_length"])
    if hop < 4 or hop & (hop - 1):
        raise UserError(f"data.hop_length = {hop}: must be a power of two >= 4 (the mel upsampler)")
    if int(data["sample_rate"]) < 1000:
        raise UserError(f"data.sample_rate = {data['sample_rate']}: must be at least 1000")
    if float(data["clip_seconds"]) * int(data["sample_rate"]) < hop:
        raise UserError("data.clip_seconds: a clip must hold at least one mel hop")
    return data


def clip_length(data: Mapping[str, Any]) -> int:
    """Samples per clip."""
    return round(float(data["clip_seconds"]) * int(data["sample_rate"]))


def load_mono(path: Path, rate: int) -> Tensor:
    """A file as a mono float32 ``(T,)`` tensor at ``rate`` Hz; :class:`DataError` names a bad one."""
    import soundfile as sf

    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        # libsndfile's message repeats the path: keep only the reason
        reason = " ".join(str(exc).replace(f"Error opening {str(path)!r}: ", "").split())
        reason = reason or type(exc).__name__
        raise DataError(f"{path}: not a readable audio file ({reason})") from None
    if audio.shape[0] == 0:
        raise DataError(f"{path}: empty audio file (no samples)")
    if not np.isfinite(audio).all():
        raise DataError(f"{path}: NaN or infinite samples")
    # mixing down to mono by the channel mean keeps a centred source at its level
    mono = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1)))
    if file_rate != rate:
        import torchaudio.functional as AF

        mono = AF.resample(mono.unsqueeze(0), int(file_rate), int(rate)).squeeze(0)
    return mono.contiguous()


def normalise_loudness(wave: Tensor, rms: float, peak: float = 0.99) -> Tensor:
    """Scale to the RMS ``rms``, the gain capped so that the peak stays at most ``peak``; silence
    is left as it is."""
    level = float(wave.pow(2).mean().sqrt())
    top = float(wave.abs().max()) if wave.numel() else 0.0
    if level < 1e-8 or top == 0.0:
        return wave
    return wave * min(rms / level, peak / top)


def fit_length(wave: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """The first ``length`` samples of ``wave`` (zero-padded) and the ``(1, length)`` valid mask."""
    n = min(len(wave), length)
    out = torch.zeros(1, length)
    out[0, :n] = wave[:n]
    mask = torch.zeros(1, length)
    mask[0, :n] = 1.0
    return out, mask


@lru_cache(maxsize=8)
def _mel_transform(rate: int, n_fft: int, hop: int, n_mels: int, f_min: float):
    import torchaudio.transforms as AT

    return AT.MelSpectrogram(
        sample_rate=rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels, f_min=f_min,
        f_max=rate / 2, power=1.0, center=True,
    )


def mel_magnitude(wave: Tensor, data: Mapping[str, Any]) -> Tensor:
    """Mel-filtered STFT magnitude ``(..., n_mels, T // hop + 1)`` of ``(..., T)`` audio."""
    mel = _mel_transform(
        int(data["sample_rate"]), int(data["n_fft"]), int(data["hop_length"]),
        int(data["n_mels"]), float(data["f_min"]),
    )
    with torch.no_grad():
        return mel(wave.float())


def log_mel(wave: Tensor, data: Mapping[str, Any]) -> Tensor:
    """DiffWave's normalised log-mel: 20·log10(max(m, 1e-5)) − 20 dB mapped from [−100, 0] to
    [0, 1]. Silence is 0, which makes the default null condition (zeros) "no sound"."""
    db = 20.0 * torch.log10(mel_magnitude(wave, data).clamp_min(1e-5)) - 20.0
    return ((db + 100.0) / 100.0).clamp(0.0, 1.0)


def mel_amplitude(mel: Tensor) -> Tensor:
    """The inverse of :func:`log_mel`'s dB mapping: mel amplitudes of a normalised log-mel (where
    it was clipped, the bound it was clipped at)."""
    return 10.0 ** ((mel.float() * 100.0 - 80.0) / 20.0)


def write_wav(path: Path, wave: Any, rate: int) -> None:
    """``(T,)`` or ``(C, T)`` audio in [-1, 1] (clipped) as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    arr = wave.detach().float().cpu().numpy() if isinstance(wave, Tensor) else np.asarray(wave)
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0).clip(-1.0, 1.0)
    frames = arr.T if arr.ndim == 2 else arr  # soundfile wants (frames, channels)
    atomic_write(Path(path), lambda tmp: sf.write(tmp, frames, int(rate), format="WAV", subtype="PCM_16"))
