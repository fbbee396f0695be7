from __future__ import annotations

import pytest
import torch
from polydiff_images import modality

from polydiff.protocol import DataError


@pytest.fixture(scope="module")
def cfg():
    return modality.default_config()


@pytest.fixture(scope="module")
def train(cfg):
    return modality.build_dataset("digits", cfg, "train")


@pytest.fixture(scope="module")
def test(cfg):
    return modality.build_dataset("digits", cfg, "test")


def test_sizes_and_item_format(train, test):
    assert len(train) == 1500
    assert len(test) == 297
    item = train[0]
    assert set(item) == {"x", "cond"}
    assert item["x"].shape == (1, 16, 16)
    assert item["x"].dtype == torch.float32
    assert isinstance(item["cond"]["label"], int)


def test_range_and_labels(train, test):
    for ds in (train, test):
        x = ds.images
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert x.min() == -1.0  # background is black
        assert x.max() > 0.5
        labels = {int(v) for v in ds.labels}
        assert labels == set(range(10))


def test_split_is_deterministic_and_disjoint(cfg, train, test):
    again = modality.build_dataset("digits", cfg, "train")
    assert torch.equal(again.images, train.images)
    assert torch.equal(again.labels, train.labels)
    # no image of the test split appears in the train split
    flat_train = {tuple(v.tolist()) for v in train.images.reshape(len(train), -1)[:, ::7]}
    overlap = sum(
        tuple(v.tolist()) in flat_train for v in test.images.reshape(len(test), -1)[:, ::7]
    )
    assert overlap <= 3  # the raw data holds a few exact duplicates


def test_collate(train):
    batch = modality.collate([train[i] for i in range(5)])
    assert batch.x.shape == (5, 1, 16, 16)
    assert batch.mask is None
    assert batch.cond["label"].shape == (5,)
    assert batch.cond["label"].dtype == torch.int64


def test_other_resolution(cfg):
    other = {**cfg, "data": {**cfg["data"], "resolution": 8}}
    ds = modality.build_dataset("digits", other, "test")
    assert ds[0]["x"].shape == (1, 8, 8)


def test_bad_split(cfg):
    with pytest.raises(ValueError, match="split"):
        modality.build_dataset("digits", cfg, "validation")


def test_empty_or_missing_folder_is_a_data_error(cfg, tmp_path):
    with pytest.raises(DataError) as err:
        modality.build_dataset(str(tmp_path), cfg, "train")
    msg = str(err.value)
    assert str(tmp_path) in msg and "\n" not in msg and "empty" in msg
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="nope"):
        modality.build_dataset(missing, cfg, "train")


def test_classes_and_optional_hflip(cfg, train, test):
    assert train.classes == tuple(str(d) for d in range(10))
    assert not train.hflip and not test.hflip
    assert torch.equal(train[3]["x"], train.images[3])  # no flips unless asked for
    flipped = modality.build_dataset("digits", {**cfg, "data": {**cfg["data"], "hflip": True}}, "train")
    assert flipped.hflip and torch.equal(flipped.images, train.images)
