"""The writer: 16-bit WAVs at the run's rate, padded tails trimmed, spectrogram PNGs, grid first."""

from __future__ import annotations

import soundfile as sf
import torch
from polydiff_audio import AudioModality
from polydiff_audio.audio_io import log_mel
from polydiff_audio.writer import colourise

DATA = {"sample_rate": 8000, "clip_seconds": 0.25, "n_fft": 256, "hop_length": 64, "n_mels": 20, "f_min": 20.0}


def test_wavs_pngs_and_grid(tmp_path):
    audio = AudioModality()
    cfg = {"data": DATA}
    x = torch.zeros(3, 1, 2000)
    x[:, 0] = torch.sin(torch.arange(2000) * 0.2) * torch.tensor([0.5, 1.5, -0.25])[:, None]
    mask = torch.ones(3, 1, 2000)
    mask[2, :, 1500:] = 0
    paths = audio.write_samples(x, tmp_path / "out", mask=mask, config=cfg)
    assert paths[0].name == "sample_grid.png"
    assert sorted(p.name for p in paths[1:]) == sorted(
        [f"sample_000{i}.wav" for i in range(3)] + [f"sample_000{i}.png" for i in range(3)]
    )
    info = sf.info(str(tmp_path / "out" / "sample_0000.wav"))
    assert (info.samplerate, info.subtype, info.frames) == (8000, "PCM_16", 2000)
    loud, _ = sf.read(tmp_path / "out" / "sample_0001.wav")
    assert abs(loud).max() <= 1.0 and abs(abs(loud).max() - 1.0) < 1e-3  # clipped to [-1, 1]
    assert sf.info(str(tmp_path / "out" / "sample_0002.wav")).frames == 1500  # padded tail trimmed
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_log_mel_range_and_colour_map():
    mel = log_mel(torch.sin(torch.arange(2000) * 0.3), DATA)
    assert mel.shape == (20, 2000 // 64 + 1) and mel.min() >= 0 and mel.max() <= 1
    assert float(log_mel(torch.zeros(2000), DATA).max()) == 0.0  # silence is the null condition
    rgb = colourise(torch.linspace(0, 1, 5).reshape(1, 5).numpy())
    assert tuple(rgb[0, 0]) == (0, 0, 4) and tuple(rgb[0, -1]) == (252, 253, 191)
