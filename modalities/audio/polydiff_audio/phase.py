"""Mel-consistency projection of a waveform, and its use inside sampling (as GLA-Grad).

A vocoder's network learns slowly how loud each time–frequency region must be; the conditioning
log-mel already says it. GLA-Grad (Liu et al. 2024) takes the denoiser's clean estimate at a
reverse step, runs Griffin–Lim iterations from *its* phase toward magnitudes implied by the mel,
and lets the sampler step with the result, without retraining.

We project onto the mel itself rather than onto one linear-frequency magnitude guessed from it:
each iteration scales the estimate's STFT by a smooth gain -- per mel band, target amplitude over
the estimate's own, spread back over the band's frequencies by the filterbank weights -- then
returns to a consistent signal (inverse STFT, STFT). The estimate keeps its fine harmonic
structure and phase, which the mel does not determine and a least-squares inverse smears across
each band. The log-mel is clipped to [-100, 0] dB (DiffWave's normalisation), so a band at its
floor (silence) carries an upper bound only, where the gain shrinks and never raises, and a band
at its ceiling (a loud partial) a lower bound, where it raises, and shrinks only what is louder
than a full-scale sinusoid. Measured on ``notes`` test clips (``benchmarks/audio.py``), 100 such
iterations from random noise already come closer to the input than torchaudio's Griffin–Lim; a
vocoder trained for half an hour on a CPU does not yet give them a better start (README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from polydiff_audio.audio_io import mel_amplitude

__all__ = ["project_onto_mel", "refine_vocoder_estimate"]


@lru_cache(maxsize=8)
def _filters(rate: int, n_fft: int, n_mels: int, f_min: float) -> tuple[Tensor, Tensor]:
    """The filterbank ``(freq, mels)`` of :func:`~polydiff_audio.audio_io.mel_magnitude`, and its
    rows normalised to sum 1 (how a frequency's gain averages its bands' gains)."""
    import torchaudio.functional as AF

    fb = AF.melscale_fbanks(n_fft // 2 + 1, f_min, rate / 2, n_mels, rate)
    return fb, fb / fb.sum(1, keepdim=True).clamp_min(1e-12)


def project_onto_mel(x: Tensor, mel: Tensor, data: Mapping[str, Any], iters: int) -> Tensor:
    """``iters`` projections of ``x`` ``(B, T)`` toward the normalised log-mel ``mel``
    ``(B, n_mels, frames)`` (module docstring); returns ``(B, T)``. 0 iterations: ``x``."""
    if iters <= 0:
        return x
    rate, n_fft, hop = int(data["sample_rate"]), int(data["n_fft"]), int(data["hop_length"])
    fb, spread = (t.to(x.device) for t in _filters(rate, n_fft, int(data["n_mels"]), float(data["f_min"])))
    # frequencies below f_min (DC included) belong to no band: removed, as a DC blocker would
    covered = (fb.sum(1) > 0)[None, :, None]
    window = torch.hann_window(n_fft, device=x.device)
    length = x.shape[-1]
    mel = mel.to(x.device)
    target = mel_amplitude(mel)
    silent, loud = mel <= 1e-6, mel >= 1.0 - 1e-6
    full_scale = n_fft / 4  # a band's amplitude for a full-scale sinusoid: none louder fits in [-1, 1]

    def stft(w: Tensor) -> Tensor:
        return torch.stft(w, n_fft, hop, n_fft, window, center=True, return_complex=True)

    spec = stft(x.float())
    frames = min(spec.shape[-1], target.shape[-1])
    target = target[..., :frames]
    silent, loud = silent[..., :frames], loud[..., :frames]
    for i in range(int(iters)):
        spec = spec[..., :frames]
        have = torch.einsum("fm,bft->bmt", fb, spec.abs())
        want = torch.where(silent, torch.minimum(have, target),
                           torch.where(loud, have.clamp(max=full_scale).maximum(target), target))
        ratio = want / have.clamp_min(1e-12)
        gain = torch.where(covered, torch.einsum("fm,bmt->bft", spread, ratio), torch.zeros(()))
        wave = torch.istft(_pad_frames(spec * gain, length, hop), n_fft, hop, n_fft, window, center=True,
                           length=length)
        if i + 1 < iters:
            spec = stft(wave)
    return wave


def _pad_frames(spec: Tensor, length: int, hop: int) -> Tensor:
    """``spec`` with zero frames appended up to the ``length // hop + 1`` frames of a centred STFT."""
    need = length // hop + 1 - spec.shape[-1]
    return torch.nn.functional.pad(spec, (0, need)) if need > 0 else spec


def refine_vocoder_estimate(denoised: Tensor, sigma: Any, cond: Mapping[str, Tensor],
                            config: Mapping[str, Any]) -> Tensor:
    """The projection, on the clean estimate of every mel-conditioned sample, at noise levels
    ≥ ``sample.mel_projection_sigma_min`` (``sample.mel_projection_iters`` iterations; 0: off)."""
    from polydiff_audio.audio_io import data_config
    from polydiff_audio.defaults import DEFAULT_CONFIG

    # a run recorded before these keys existed gets today's defaults
    sample = {**DEFAULT_CONFIG["sample"], **(config.get("sample") or {})}
    iters = int(sample.get("mel_projection_iters", 0) or 0)
    mel = cond.get("mel")
    if iters <= 0 or mel is None or not isinstance(denoised, Tensor):
        return denoised
    if float(torch.as_tensor(sigma).float().max()) < float(sample.get("mel_projection_sigma_min", 0.0) or 0.0):
        return denoised
    b = denoised.shape[0]
    mel = mel.to(denoised.device)
    if mel.shape[0] != b:
        mel = mel.expand(b, *mel.shape[1:])
    mono = denoised.mean(1) if denoised.dim() == 3 else denoised
    out = project_onto_mel(mono, mel, data_config(config), iters).to(denoised.dtype)
    out = out.unsqueeze(1).expand_as(denoised) if denoised.dim() == 3 else out
    # the null mel of guidance (all floor: "no condition") says nothing to project onto
    active = mel.flatten(1).amax(1) > 0
    return torch.where(active.view(-1, *([1] * (denoised.dim() - 1))), out, denoised)
