"""Distances between a waveform and its reference, as vocoder papers report them.

- :func:`mr_stft_distance`: multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN
  eqs. 4–6): spectral convergence ‖|Y| − |X|‖_F / ‖|Y|‖_F plus mean |log|Y| − log|X||, averaged over
  three (FFT, hop, window) resolutions.
- :func:`log_mel_l1`: mean |ln mel(y) − ln mel(x)| of the mel-filtered magnitudes.
- :func:`mel_cepstral_distortion`: (10 / ln 10) · √(2 Σ_{k=1..K} (c_k − ĉ_k)²) per frame,
  averaged over every frame (silent ones included), with cepstra from the DCT of the natural-log
  mel amplitude (c_0, the level, left out as usual).
  Frames are compared in place: the outputs are aligned with their inputs, so no time warping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff_audio.audio_io import mel_magnitude

__all__ = ["log_mel_l1", "mel_cepstral_distortion", "mr_stft_distance", "resolutions"]

_FLOOR = 1e-7


def resolutions(rate: int) -> list[tuple[int, int, int]]:
    """``(n_fft, hop, window)`` triples: Parallel WaveGAN's (1024/120/600, 2048/240/1200,
    512/50/240) at 24 kHz, scaled to ``rate``."""
    scale = rate / 24000
    out = []
    for n_fft, hop, win in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)):
        w = max(16, round(win * scale))
        out.append((max(w, 1 << math.ceil(math.log2(n_fft * scale))), max(4, round(hop * scale)), w))
    return out


def _flat(x: Tensor) -> Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    return x.mean(1) if x.dim() == 3 else x.reshape(-1, x.shape[-1])


def _stft_mag(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    window = torch.hann_window(win)
    return torch.stft(x, n_fft, hop, win, window, return_complex=True).abs()


def mr_stft_distance(x: Tensor, ref: Tensor, rate: int) -> Tensor:
    """``(B,)`` multi-resolution STFT distance of ``x`` to ``ref`` (both ``(B, [C,] T)``)."""
    x, ref = _flat(x), _flat(ref)
    total = torch.zeros(len(x))
    res = resolutions(rate)
    for n_fft, hop, win in res:
        mx, my = _stft_mag(x, n_fft, hop, win), _stft_mag(ref, n_fft, hop, win)
        sc = (my - mx).flatten(1).norm(dim=1) / my.flatten(1).norm(dim=1).clamp_min(_FLOOR)
        mag = (my.clamp_min(_FLOOR).log() - mx.clamp_min(_FLOOR).log()).abs().flatten(1).mean(1)
        total += sc + mag
    return total / len(res)


def log_mel_l1(x: Tensor, ref: Tensor, data: Mapping[str, Any]) -> Tensor:
    """``(B,)`` mean absolute difference of natural-log mel magnitudes."""
    mx = mel_magnitude(_flat(x), data).clamp_min(1e-5).log()
    my = mel_magnitude(_flat(ref), data).clamp_min(1e-5).log()
    return (mx - my).abs().flatten(1).mean(1)


def _dct_matrix(n: int, k: int) -> Tensor:
    i = torch.arange(n, dtype=torch.float64)
    rows = [torch.cos(math.pi / n * (i + 0.5) * q) * math.sqrt((1 if q == 0 else 2) / n) for q in range(k)]
    return torch.stack(rows).float()  # orthonormal DCT-II, first k rows


def mel_cepstral_distortion(x: Tensor, ref: Tensor, data: Mapping[str, Any], coefficients: int = 13) -> Tensor:
    """``(B,)`` MCD in dB over cepstral coefficients 1..``coefficients``."""
    n_mels = int(data["n_mels"])
    dct = _dct_matrix(n_mels, coefficients + 1)
    # cepstra of the natural-log *amplitude* (Kubichek 1993's constant assumes it; log power
    # would double every distance)
    cx = torch.einsum("kn,bnf->bkf", dct, mel_magnitude(_flat(x), data).clamp_min(1e-5).log())
    cy = torch.einsum("kn,bnf->bkf", dct, mel_magnitude(_flat(ref), data).clamp_min(1e-5).log())
    diff = (cx - cy)[:, 1:]
    return (10.0 / math.log(10.0)) * (2.0 * diff.pow(2).sum(1)).sqrt().mean(1)
