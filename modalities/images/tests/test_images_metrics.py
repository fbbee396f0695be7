"""The reference digits classifier, image metrics, and `polydiff evaluate` on a tiny images run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from polydiff_images import DEFAULT_CONFIG, ImagesModality
from polydiff_images.classifier import ASSETS, load_reference_classifier
from polydiff_images.data import build_digits
from polydiff_images.evaluation import evaluate_images, metrics_for_modality
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.config import resolve
from polydiff.train import train


@pytest.fixture(scope="module")
def digits():
    cfg = DEFAULT_CONFIG["data"]
    return build_digits(cfg, "train"), build_digits(cfg, "test")


def _subset(images, n, seed=0):
    """A random subset: the split is in scikit-learn's order, where neighbours share writers."""
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]]


def test_classifier_ships_small_and_accurate(digits):
    path = ASSETS / "digits_classifier.safetensors"
    assert path.stat().st_size < 400 * 1024
    clf = load_reference_classifier("digits")
    assert not clf.training
    _, test = digits
    with torch.no_grad():
        acc = (clf(test.images).argmax(1) == test.labels).float().mean()
        feats = clf.features(test.images[:5])
    assert acc >= 0.97
    assert feats.shape == (5, 128) and (feats >= 0).all()
    with pytest.raises(KeyError, match="digits"):
        load_reference_classifier("cifar")


def test_real_digits_score_as_real(digits):
    train_ds, test = digits
    result = evaluate_images(
        _subset(train_ds.images, 300), "digits", test.images, test.labels, real_train=train_ds.images
    )
    assert result["features"] == "digits-classifier"
    assert result["n_samples"] == 300 and result["n_real"] == 297
    assert result["fd"] < 5 and abs(result["kid"]) < 0.1
    assert result["precision"] > 0.85 and result["recall"] > 0.85
    assert result["class_tv"] < 0.25 and result["confident"] > 0.95
    for key in ("fd", "kid", "precision", "recall", "class_tv", "confident"):
        assert f"reference/{key}" in result
    assert result["reference/n_samples"] == 300


def test_bad_samples_score_badly(digits):
    train_ds, test = digits
    g = torch.Generator().manual_seed(0)
    noise = evaluate_images(torch.rand(200, 1, 16, 16, generator=g) * 2 - 1, "digits", test.images, test.labels)
    assert noise["fd"] > 50 and noise["precision"] < 0.05 and noise["recall"] < 0.05
    assert "reference/fd" not in noise
    blurred = F.avg_pool2d(_subset(train_ds.images, 300), 3, 1, 1)
    blur = evaluate_images(blurred, "digits", test.images, test.labels)
    threes = train_ds.images[train_ds.labels == 3]
    collapsed = evaluate_images(threes, "digits", test.images, test.labels)
    real = evaluate_images(_subset(train_ds.images, 300), "digits", test.images, test.labels)
    assert real["fd"] < blur["fd"] < collapsed["fd"]
    assert blur["recall"] < 0.7 < real["recall"]
    assert collapsed["class_tv"] > 0.8 and collapsed["recall"] < 0.2


def test_pixel_fallback_without_classifier(digits):
    train_ds, test = digits
    result = evaluate_images(train_ds.images[:100], None, test.images, real_train=train_ds.images)
    assert result["features"] == "pixels"
    assert {"kid", "precision", "recall", "reference/kid"} <= set(result)
    assert "fd" not in result and "class_tv" not in result and "confident" not in result
    # another resolution has no classifier either
    small = evaluate_images(torch.zeros(8, 1, 8, 8), "digits", torch.rand(10, 1, 8, 8) * 2 - 1)
    assert small["features"] == "pixels"
    with pytest.raises(ValueError, match="samples are"):
        evaluate_images(torch.zeros(8, 1, 8, 8), "digits", test.images)


def test_metrics_for_modality_reads_the_run_config(digits):
    train_ds, _ = digits
    evaluate = metrics_for_modality()["quality"]
    cfg = ImagesModality().default_config()
    result = evaluate(train_ds.images[:64], cfg)
    assert result["features"] == "digits-classifier" and "reference/fd" in result
    assert "warning" not in result
    cfg["data"]["split_seed"] = 1
    assert "warning" in evaluate(train_ds.images[:64], cfg)


class ScoredImages(ImagesModality):
    """ImagesModality with its metrics hooked in, the way the plugin will."""

    def metrics(self):
        return metrics_for_modality(self)


def test_cli_evaluate_tiny_images_run(tmp_path, monkeypatch):
    import polydiff.registry as registry

    reg = registry.Registry(autoload=False)
    reg.register(ScoredImages(), distribution="polydiff-images", version="0.1.0")
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    plugin = reg.load("images")
    tiny = {
        "model": {"base_channels": 8, "channel_mult": [1], "attention_levels": [],
                  "attention_head_dim": 8, "norm_groups": 4},
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 0, "plot_every": 0,
                  "snapshot_every": 0, "log_every": 1, "threads": 1},
    }
    run = tmp_path / "run"
    train(plugin, resolve(plugin, overrides=tiny), run, sample_at_end=False)
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--n", "16", "--sampler", "euler", "--steps", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    for text in ("quality", "fd", "precision", "real data", "digits-classifier"):
        assert text in result.stdout
    report = json.loads((run / "eval" / "euler-2.json").read_text())
    metrics = report["metrics"]["quality"]
    assert metrics["features"] == "digits-classifier" and metrics["n_samples"] == 16
    # two training steps make noise, not digits; the real-data row stays good
    assert metrics["fd"] > metrics["reference/fd"]
    assert metrics["reference/precision"] > 0.8
