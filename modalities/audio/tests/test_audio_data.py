"""Loading clips: notes, and folders of mono/stereo files at odd rates, short, corrupt or empty."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from _audio_tiny import TINY
from polydiff_audio import modality
from polydiff_audio.notes import midi_to_hz
from polydiff_audio.pitch import estimate_f0

from polydiff.protocol import DataError

RATE = 8000
LENGTH = 2000  # TINY: 0.25 s at 8 kHz


def _tone(seconds, rate, hz=300.0, channels=1, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    mono = amp * np.sin(2 * np.pi * hz * t)
    return mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)


def _cfg(**data):
    return {"data": {**TINY["data"], **data}, "model": dict(TINY["model"])}


def test_notes_are_deterministic_balanced_and_held_out():
    cfg = _cfg()
    train = modality.build_dataset("notes", cfg, "train")
    again = modality.build_dataset("notes", cfg, "train")
    test = modality.build_dataset("notes", cfg, "test")
    assert len(train) == 16 and len(test) == 8
    assert torch.equal(train[3]["x"], again[3]["x"])
    assert train[3]["x"].shape == (1, LENGTH)
    assert sorted(train.labels.tolist()) == sorted(list(range(8)) * 2)
    # no test clip equals a train clip
    tr = torch.stack([train[i]["x"] for i in range(len(train))]).flatten(1)
    te = torch.stack([test[i]["x"] for i in range(len(test))]).flatten(1)
    assert torch.cdist(te, tr).min() > 1e-3
    # every clip sounds at its label's pitch (within 10 cents)
    f0 = estimate_f0(tr.unsqueeze(1), RATE)
    ref = torch.as_tensor(midi_to_hz(np.array(TINY_PITCHES)))[train.labels]
    assert (1200 * torch.log2(f0 / ref)).abs().max() < 10


TINY_PITCHES = [57, 59, 60, 62, 64, 65, 67, 69]


def test_train_crop_is_on_the_hop_grid_and_inside_the_clip():
    cfg = _cfg(train_crop=640)
    ds = modality.build_dataset("notes", cfg, "train")
    torch.manual_seed(0)
    item = ds[0]
    assert item["x"].shape == (1, 640)
    full = ds.full_item(0)["x"][0]
    starts = [s for s in range(0, LENGTH - 640 + 1, 64) if torch.equal(full[s : s + 640], item["x"][0])]
    assert starts


def test_folder_of_mixed_files(tmp_path):
    root = tmp_path / "data"
    (root / "low").mkdir(parents=True)
    (root / "high").mkdir()
    sf.write(root / "low" / "mono_44k.wav", _tone(0.5, 44100, 200), 44100)
    sf.write(root / "low" / "stereo_11k.flac", _tone(0.4, 11025, 200, channels=2), 11025)
    sf.write(root / "high" / "short.ogg", _tone(0.1, 8000, 600), 8000, format="OGG")
    sf.write(root / "high" / "long_22k.wav", _tone(1.0, 22050, 600), 22050, subtype="FLOAT")
    (root / "high" / "notes.txt").write_text("ignored: not audio")
    cfg = _cfg(path=str(root), test_fraction=0.0)
    ds = modality.build_dataset(str(root), cfg, "train")
    assert len(ds) == 4 and ds.labels.tolist() == [0, 0, 1, 1]  # classes by sorted name: high, low
    items = [ds[i] for i in range(4)]
    for it in items:
        assert it["x"].shape == (1, LENGTH) and it["mask"].shape == (1, LENGTH)
        rms = it["x"][it["mask"] > 0].pow(2).mean().sqrt()
        assert abs(float(rms) - 0.1) < 0.01  # loudness-normalised
    # the 0.1 s clip is zero-padded and masked after 800 samples
    short = next(it for it in items if int(it["mask"].sum()) < LENGTH)
    assert int(short["mask"].sum()) == 800 and short["x"][0, 800:].abs().max() == 0
    # resampled to 8 kHz, the pitch survives
    f0 = estimate_f0(torch.stack([it["x"] for it in items]), RATE)
    assert torch.allclose(f0, torch.tensor([600.0, 600.0, 200.0, 200.0], dtype=f0.dtype), rtol=0.01)
    batch = modality.collate(items)
    assert batch.mask.shape == (4, 1, LENGTH)


@pytest.mark.parametrize(
    "write, needle",
    [
        (lambda p: p.write_bytes(b"RIFF1234WAVEnot really"), "not a readable audio file"),
        (lambda p: sf.write(p, np.zeros(0), 8000), "empty audio file"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2]), 8000, subtype="FLOAT"), "NaN"),
        (lambda p: p.write_text("hello, I am text"), "not a readable audio file"),
    ],
    ids=["corrupt", "zero-length", "nan", "text"],
)
def test_bad_files_are_one_line_data_errors(tmp_path, write, needle):
    root = tmp_path / "data"
    root.mkdir()
    sf.write(root / "good.wav", _tone(0.3, 8000), 8000)
    write(root / "bad.wav")
    with pytest.raises(DataError) as info:
        modality.build_dataset(str(root), _cfg(path=str(root)), "train")
    msg = str(info.value)
    assert "\n" not in msg and "bad.wav" in msg and needle in msg


def test_skip_bad_drops_the_file(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    sf.write(root / "good.wav", _tone(0.3, 8000), 8000)
    (root / "bad.wav").write_bytes(b"garbage")
    ds = modality.build_dataset(str(root), _cfg(path=str(root), skip_bad=True, test_fraction=0.0), "train")
    assert len(ds) == 1


def test_layout_errors(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    sf.write(root / "a" / "x.wav", _tone(0.3, 8000), 8000)
    sf.write(root / "y.wav", _tone(0.3, 8000), 8000)
    with pytest.raises(DataError, match="both at the top level"):
        modality.build_dataset(str(root), _cfg(path=str(root)), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no audio files"):
        modality.build_dataset(str(empty), _cfg(path=str(empty)), "train")


def test_test_split_holds_out_files(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(10):
        sf.write(root / f"{i}.wav", _tone(0.3, 8000, 200 + 20 * i), 8000)
    cfg = _cfg(path=str(root), test_fraction=0.2)
    train = modality.build_dataset(str(root), cfg, "train")
    test = modality.build_dataset(str(root), cfg, "test")
    assert (len(train), len(test)) == (8, 2)
