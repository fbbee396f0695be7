"""Metrics on signals whose answers are known: tones of known pitch, gains of known size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from polydiff_audio.pitch import estimate_f0, pitch_scores
from polydiff_audio.spectral import log_mel_l1, mel_cepstral_distortion, mr_stft_distance

DATA = {"sample_rate": 8000, "n_fft": 256, "hop_length": 64, "n_mels": 20, "f_min": 20.0}


def _harmonic(hz, rate=8000, seconds=0.5, partials=5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    wave = sum(np.sin(2 * np.pi * hz * k * t + rng.uniform(0, 6)) / k for k in range(1, partials + 1) if hz * k < rate / 2)
    return torch.tensor(0.3 * wave, dtype=torch.float32)


@pytest.mark.parametrize("hz", [110.0, 220.0, 261.63, 311.13, 440.0, 659.26])
def test_f0_of_harmonic_tones_within_five_cents(hz):
    f0 = estimate_f0(_harmonic(hz).reshape(1, 1, -1), 8000)
    assert abs(1200 * math.log2(float(f0[0]) / hz)) < 5


def test_noise_and_silence_are_unvoiced():
    x = torch.cat([torch.randn(3, 4000) * 0.3, torch.zeros(1, 4000)])
    assert torch.isnan(estimate_f0(x, 8000)).all()


def test_pitch_scores_by_hand():
    pitches = [220.0, 440.0, 880.0]
    quarter = 2 ** (40 / 1200)  # 40 cents: inside a quarter-tone
    wide = 2 ** (60 / 1200)  # 60 cents: outside
    f0 = torch.tensor([220.0 * quarter, 440.0 / wide, float("nan"), 880.0, 880.0 / quarter])
    labels = torch.tensor([0, 1, 2, 1, -1])
    s = pitch_scores(f0, pitches, labels)
    assert s["pitch_accuracy"] == pytest.approx(3 / 5)
    assert s["pitch_coverage"] == pytest.approx(2 / 3)  # 220 and 880 hit, 440 missed
    assert s["voiced"] == pytest.approx(4 / 5)
    assert s["label_accuracy"] == pytest.approx(1 / 4)  # of the 4 labelled rows only the first


@pytest.mark.parametrize("gain", [0.5, 2.0])
def test_spectral_distances_of_a_gain(gain):
    y = torch.randn(2, 4000) * 0.2
    x = gain * y
    # every magnitude scales by the gain: SC = |1 − g|, log-magnitude L1 = |ln g|
    assert torch.allclose(mr_stft_distance(x, y, 8000), torch.tensor(abs(1 - gain) + abs(math.log(gain))), atol=1e-4)
    assert torch.allclose(log_mel_l1(x, y, DATA), torch.tensor(abs(math.log(gain))), atol=1e-4)
    # a gain moves only c0, which MCD leaves out
    assert mel_cepstral_distortion(x, y, DATA).abs().max() < 1e-3
    assert mel_cepstral_distortion(y + 0.2 * torch.randn_like(y), y, DATA).min() > 1.0
    assert mr_stft_distance(y, y, 8000).abs().max() < 1e-6


def test_quality_scores_real_clips_like_the_data_and_takes_user_features():
    from _audio_tiny import TINY
    from polydiff_audio import modality

    cfg = {k: dict(v) for k, v in TINY.items()}
    cfg["data"]["test_size"] = 16
    ds = modality.build_dataset("notes", cfg, "test")
    clips = torch.stack([ds.full_item(i)["x"] for i in range(8)])
    quality = modality.metrics()["quality"]
    real = quality(clips, cfg, cond={"label": ds.labels[:8]})
    assert real["pitch_accuracy"] == 1.0 and real["label_accuracy"] == 1.0 and real["voiced"] == 1.0
    assert real["features"] == "log-mel statistics"
    noise = quality(torch.randn(8, 1, clips.shape[-1]) * 0.2, cfg, cond={"label": ds.labels[:8]})
    assert noise["pitch_accuracy"] == 0.0 and noise["kid"] > real["kid"]
    cfg["eval"] = {"features": "first 4 samples", "extractor": lambda x: x.flatten(1)[:, :4]}
    user = quality(clips, cfg)
    assert user["features"] == "first 4 samples" and "kid" in user
