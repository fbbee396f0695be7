"""The mel-consistency projection (polydiff_audio.phase) on tones with known spectrograms."""

from __future__ import annotations

import math

import torch
from polydiff_audio.audio_io import log_mel, mel_amplitude, mel_magnitude
from polydiff_audio.phase import project_onto_mel, refine_vocoder_estimate
from polydiff_audio.spectral import log_mel_l1, mr_stft_distance

DATA = {"sample_rate": 8000, "n_fft": 512, "hop_length": 128, "n_mels": 40, "f_min": 20.0}
T = 8000


def _tones() -> torch.Tensor:
    """Two 0.6-s harmonic tones with a decay, then digital silence (as `notes` clips end)."""
    t = torch.arange(T) / DATA["sample_rate"]
    out = torch.zeros(2, T)
    for i, f0 in enumerate((220.0, 330.0)):
        wave = sum(torch.sin(2 * math.pi * k * f0 * t + k) / k for k in (1, 2, 3))
        env = torch.exp(-3 * t) * (t < 0.6)
        out[i] = 0.3 * wave * env
    return out


def test_a_signal_with_the_target_mel_is_left_almost_as_it_is():
    x = _tones()
    y = project_onto_mel(x, log_mel(x, DATA), DATA, 8)
    assert float((y - x).norm() / x.norm()) < 0.05
    assert float(y[:, 5200:].abs().max()) < 1e-3  # the silence stays silent


def test_from_noise_it_approaches_the_mel_and_beats_griffin_lim():
    import torchaudio.transforms as AT

    x = _tones()
    mel = log_mel(x, DATA)
    noise = torch.rand(2, T, generator=torch.Generator().manual_seed(0)) - 0.5
    dist = [float(log_mel_l1(project_onto_mel(noise, mel, DATA, k), x, DATA).mean()) for k in (0, 4, 32)]
    assert dist[0] > dist[1] > dist[2]
    # torchaudio's Griffin–Lim on the least-squares linear magnitudes of the same mel
    amp = 10.0 ** ((mel * 100.0 - 80.0) / 20.0)
    lin = AT.InverseMelScale(n_stft=257, n_mels=40, sample_rate=8000, f_min=20.0, f_max=4000.0)(amp)
    gl = AT.GriffinLim(n_fft=512, hop_length=128, power=1.0, n_iter=100)(lin)
    gl = torch.nn.functional.pad(gl, (0, T - gl.shape[-1]))
    ours = project_onto_mel(noise, mel, DATA, 100)
    assert float(log_mel_l1(ours, x, DATA).mean()) < float(log_mel_l1(gl, x, DATA).mean())
    assert float(mr_stft_distance(ours, x, 8000).mean()) < float(mr_stft_distance(gl, x, 8000).mean())


def test_silent_bands_only_lose_energy():
    noise = 0.01 * torch.randn(1, T, generator=torch.Generator().manual_seed(1))
    silent = torch.zeros(1, 40, T // 128 + 1)  # the floor everywhere: at most the floor's level
    y = project_onto_mel(noise, silent, DATA, 4)
    assert float(y.norm()) < 0.05 * float(noise.norm())


def test_sampling_refines_only_mel_conditioned_estimates_above_the_threshold():
    x = _tones()[:, None]  # (B, 1, T)
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    mel = log_mel(x[:, 0], DATA)
    config = {"data": DATA, "sample": {"mel_projection_iters": 8, "mel_projection_sigma_min": 0.5}}
    sigma = torch.full((2,), 1.0)
    out = refine_vocoder_estimate(noisy, sigma, {"mel": mel}, config)
    assert out.shape == noisy.shape
    assert float(log_mel_l1(out, x, DATA).mean()) < 0.5 * float(log_mel_l1(noisy, x, DATA).mean())
    assert refine_vocoder_estimate(noisy, sigma * 0.1, {"mel": mel}, config) is noisy  # below sigma_min
    assert refine_vocoder_estimate(noisy, sigma, {}, config) is noisy  # no mel: not a vocoder
    null = torch.zeros_like(mel)  # guidance's null mel: nothing to project onto
    torch.testing.assert_close(refine_vocoder_estimate(noisy, sigma, {"mel": null}, config), noisy)
    off = {"data": DATA, "sample": {"mel_projection_iters": 0}}
    assert refine_vocoder_estimate(noisy, sigma, {"mel": mel}, off) is noisy


def test_mel_amplitude_inverts_log_mel_where_it_is_not_clipped():
    x = _tones()
    mel = log_mel(x, DATA)
    inside = (mel > 1e-6) & (mel < 1.0 - 1e-6)
    assert inside.float().mean() > 0.2
    torch.testing.assert_close(mel_amplitude(mel)[inside], mel_magnitude(x, DATA)[inside], rtol=1e-3, atol=0)
