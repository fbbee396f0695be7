"""DiffWave's table on hand-made cases with known answers, and the shipped notes classifier."""

from __future__ import annotations

import math

import pytest
import torch
from polydiff_audio.field_metrics import (
    NDBBins,
    am_score,
    field_scores,
    inception_score,
    kmeans,
    modified_inception_score,
    proportion_z,
)


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def test_fid_of_identical_sets_is_zero_and_a_shift_adds_its_squared_length():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=gen)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.0, 0.0])
    bins = NDBBins(a, k=5)
    assert field_scores(a, None, a, None, bins)["fid"] == pytest.approx(0.0, abs=1e-8)
    # same covariance, mean moved by `shift`: FID = |shift|^2 exactly
    moved = field_scores(a + shift, None, a, None, bins)["fid"]
    assert moved == pytest.approx(float(shift.square().sum()), rel=1e-6)
    assert field_scores(a + 2 * shift, None, a, None, bins)["fid"] > moved > 0


@pytest.mark.parametrize("classes", [2, 8, 10])
def test_is_of_confident_uniform_predictions_is_the_class_count(classes):
    probs = torch.eye(classes).repeat(3, 1)
    assert inception_score(probs) == pytest.approx(classes, rel=1e-12)
    assert inception_score(torch.eye(classes)[[0] * 6]) == pytest.approx(1.0)  # collapse: 1
    assert inception_score(torch.full((5, classes), 1.0 / classes)) == pytest.approx(1.0)


def test_modified_is_by_hand():
    p, q = [0.5, 0.5], [0.9, 0.1]
    # ordered pairs (p,p), (p,q), (q,p), (q,q): two zeros and the two KLs, over 4
    want = math.exp((_kl(p, q) + _kl(q, p)) / 4)
    assert modified_inception_score(torch.tensor([p, q], dtype=torch.float64)) == pytest.approx(want, rel=1e-12)
    assert modified_inception_score(torch.tensor([p, p, p])) == pytest.approx(1.0)


def test_am_score_by_hand():
    train = torch.tensor([[0.8, 0.2], [0.2, 0.8]], dtype=torch.float64)  # mean prediction (0.5, 0.5)
    samples = torch.tensor([[0.9, 0.1], [0.6, 0.4]], dtype=torch.float64)  # mean (0.75, 0.25)
    entropy = -sum(v * math.log(v) for v in (0.9, 0.1)) / 2 - sum(v * math.log(v) for v in (0.6, 0.4)) / 2
    want = _kl([0.5, 0.5], [0.75, 0.25]) + entropy
    assert am_score(samples, train) == pytest.approx(want, rel=1e-12)
    # confident samples in the train set's balance: 0
    assert am_score(torch.eye(3).repeat(2, 1), torch.eye(3)) == pytest.approx(0.0, abs=1e-12)


def test_proportion_z_by_hand():
    # 30 of 100 against 20 of 100: pooled 0.25, se = sqrt(0.25 * 0.75 * 0.02)
    z = proportion_z(torch.tensor([30]), 100, torch.tensor([20]), 100)
    assert float(z[0]) == pytest.approx(0.1 / math.sqrt(0.25 * 0.75 * 0.02), rel=1e-12)
    assert float(proportion_z(torch.tensor([0]), 10, torch.tensor([0]), 10)[0]) == 0.0


def _clusters(k, per, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(k) * 10.0
    return torch.cat([c + 0.1 * torch.randn(per, k, generator=gen) for c in centres])


def test_kmeans_finds_separated_clusters():
    x = _clusters(4, 50)
    found = kmeans(x, 4, seed=1)
    assert torch.cdist(found, torch.eye(4, dtype=torch.float64) * 10.0).min(1).values.max() < 0.2


def test_ndb_on_identical_and_disjoint_bins():
    train = _clusters(4, 50)
    bins = NDBBins(train, k=4)
    assert bins.ndb_k(train) == 0.0
    assert bins.ndb_k(_clusters(4, 50, seed=3)) == 0.0  # the same distribution
    # every sample in one bin: that bin is over-full, the three others empty
    assert bins.ndb_k(train[:50].repeat(4, 1)) == 1.0
    # one bin's share moved into another: those two differ, the other two keep their share
    half = torch.cat([train[:50], train[50:100], train[150:200], train[150:200]])
    assert bins.ndb_k(half) == 0.5


def test_ndb_needs_more_points_than_bins():
    with pytest.raises(ValueError):
        kmeans(torch.zeros(3, 2), 4)


# ---------------------------------------------------------------- the shipped notes classifier


def test_shipped_classifier_loads_and_names_real_notes():
    from polydiff_audio.classifier import CLASSIFIER_PITCHES, load_notes_classifier
    from polydiff_audio.notes import notes_split

    clf = load_notes_classifier()
    clips, labels = notes_split("test", 24, CLASSIFIER_PITCHES, 16000, 16000)  # held out
    feats, probs = clf.predict(torch.from_numpy(clips)[:, None], 16000)
    assert feats.shape == (24, clf.feature_dim) and probs.shape == (24, 8)
    accuracy = float((probs.argmax(1) == torch.from_numpy(labels)).double().mean())
    assert accuracy >= 0.9  # chance: 1/8
    # the same clips at 8 kHz are resampled to its 16 kHz
    clips8, _ = notes_split("test", 8, CLASSIFIER_PITCHES, 8000, 8000)
    assert (clf.predict(torch.from_numpy(clips8)[:, None], 8000)[1].argmax(1) == torch.from_numpy(labels[:8])).all()


def test_classifier_features_ignore_16_bit_rounding():
    """The front end's floor sits 80 dB below each clip's peak, so what the WAV writer's 16-bit
    rounding adds (~-100 dBFS) barely moves the features (without the floor: ~5 % on these clips)."""
    from polydiff_audio.classifier import CLASSIFIER_PITCHES, TOP_DB, load_notes_classifier
    from polydiff_audio.notes import notes_split

    clf = load_notes_classifier()
    clips, _ = notes_split("test", 16, CLASSIFIER_PITCHES, 16000, 16000)
    x = torch.from_numpy(clips)[:, None]
    mel = clf.log_mel(x)
    assert torch.allclose(mel.amin(dim=(1, 2)), mel.amax(dim=(1, 2)) - TOP_DB / 100.0)
    f0, f1 = clf.predict(x)[0], clf.predict(torch.round(x * 32767) / 32767)[0]
    assert float(((f1 - f0).norm(dim=1) / f0.norm(dim=1)).max()) < 0.03


def test_classifier_refuses_other_weights(tmp_path, monkeypatch):
    from polydiff_audio import classifier as C
    from safetensors.torch import load_file, save_file

    monkeypatch.setattr(C, "CLASSIFIER_SHA256", "f" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        C.load_notes_classifier()
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(C.CLASSIFIER_FILE)), str(old), metadata={"format": "0"})
    with pytest.raises(ValueError, match="format"):
        C.load_notes_classifier(old)


def _tiny(tmp_path=None):
    cfg = {"data": {"sample_rate": 8000, "clip_seconds": 0.25, "train_size": 24, "test_size": 8,
                    "n_fft": 256, "hop_length": 64, "n_mels": 20}}
    if tmp_path is not None:
        cfg["data"]["path"] = str(tmp_path)
    return cfg


def test_table_in_user_features_with_and_without_probabilities():
    from polydiff_audio.data import build_dataset
    from polydiff_audio.evaluation import classifier_table

    cfg = _tiny()
    train, test = build_dataset("notes", cfg, "train"), build_dataset("notes", cfg, "test")
    samples = torch.stack([test.full_item(i)["x"] for i in range(8)])

    def feats_only(x):
        return torch.stack([x.abs().mean((1, 2)), x.square().mean((1, 2)), x.std((1, 2))], 1)

    out = classifier_table(samples, cfg, train=train, test=test, extractor=feats_only, extractor_name="mine")
    assert out["features"] == "mine" and "fid" in out and "ndb_k" in out and "is" not in out

    def with_probs(x):
        f = feats_only(x)
        return f, torch.softmax(f @ torch.ones(3, 4), 1)

    out = classifier_table(samples, cfg, train=train, test=test, extractor=with_probs, extractor_name="mine")
    assert {"is", "mis", "am", "reference/is", "train_set/am"} <= set(out)
    assert out["train_set/fid"] == pytest.approx(0.0, abs=1e-6)


def test_table_without_a_classifier_is_a_note(tmp_path):
    import numpy as np
    import soundfile as sf
    from polydiff_audio.data import build_dataset
    from polydiff_audio.evaluation import classifier_table

    for i in range(4):
        sf.write(tmp_path / f"t{i}.wav", np.random.default_rng(i).uniform(-0.3, 0.3, 2000), 8000)
    cfg = _tiny(tmp_path)
    train, test = build_dataset(tmp_path, cfg, "train"), build_dataset(tmp_path, cfg, "test")
    out = classifier_table(torch.zeros(3, 1, 2000), cfg, train=train, test=test)
    assert out["features"] == "none" and "--features" in str(out["note"])
