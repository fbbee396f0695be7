"""The built-in ``shapes`` and its reference classifier."""

from __future__ import annotations

import pytest
import torch
from polydiff_images import modality
from polydiff_images.classifier import ASSETS, load_reference_classifier
from polydiff_images.evaluation import evaluate_images
from polydiff_images.shapes import SHAPE_CLASSES, SHAPES_TEST, SHAPES_TRAIN, render_shapes


def shapes_cfg(**data):
    cfg = modality.default_config()
    cfg["data"].update({"dataset": "shapes", "resolution": 32, "channels": 3, **data})
    return cfg


@pytest.fixture(scope="module")
def test_split():
    return modality.build_dataset("shapes", shapes_cfg(), "test")


def test_render_is_deterministic():
    a, la = render_shapes(36, seed=5)
    b, lb = render_shapes(36, seed=5)
    assert a.dtype == torch.uint8 and a.shape == (36, 3, 32, 32)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _ = render_shapes(36, seed=6)
    assert not torch.equal(a, c)


def test_splits_sizes_balance_and_range(test_split):
    assert len(test_split) == SHAPES_TEST and SHAPES_TRAIN % len(SHAPE_CLASSES) == 0
    assert test_split.classes == SHAPE_CLASSES
    assert torch.bincount(test_split.labels).tolist() == [SHAPES_TEST // 6] * 6
    x = test_split.images
    assert x.shape == (SHAPES_TEST, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() <= 1.0
    assert (x[:, :, 0, 0] == -1).float().mean() > 0.95  # black background
    # anti-aliased edges: many values between background and the palette colours
    raw = test_split.data
    assert len(torch.unique(raw)) > 100
    item = test_split[0]
    assert item["x"].shape == (3, 32, 32) and isinstance(item["cond"]["label"], int)
    assert not test_split.hflip


def test_same_config_same_tensors(test_split):
    again = modality.build_dataset("shapes", shapes_cfg(), "test")
    assert torch.equal(again.data, test_split.data)
    assert torch.equal(again.labels, test_split.labels)


def test_other_resolution_and_grayscale():
    x, labels = render_shapes(12, seed=0, resolution=16, channels=1)
    assert x.shape == (12, 1, 16, 16) and torch.bincount(labels).tolist() == [2] * 6
    ds = modality.build_dataset("shapes", shapes_cfg(resolution=16, channels=1), "test")
    assert ds[0]["x"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="resolution"):
        render_shapes(4, seed=0, resolution=4)


def test_reference_classifier_is_small_and_accurate(test_split):
    path = ASSETS / "shapes_classifier.safetensors"
    assert path.stat().st_size < 400 * 1024
    clf = load_reference_classifier("shapes")
    held_out = 600  # half the test split keeps this quick (all 1,200: 100 %, see the README)
    feats, probs = clf.predict(test_split.images[:held_out])
    acc = (probs.argmax(1) == test_split.labels[:held_out]).float().mean()
    assert acc >= 0.95, acc
    assert feats.shape == (held_out, 128) and (feats >= 0).all()
    # the metrics use it for 3x32x32 shapes: real images score as real
    result = evaluate_images(test_split.images[:100], "shapes", test_split.images[600:900])
    assert result["features"] == "shapes-classifier"
    assert result["precision"] > 0.8 and result["recall"] > 0.8 and result["confident"] > 0.9
