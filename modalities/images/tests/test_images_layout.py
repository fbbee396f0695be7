"""Default sample layout: labels in the training data's exact proportions."""

import torch
from polydiff_images import DEFAULT_CONFIG, modality


def test_digits_layout_matches_the_train_split():
    cfg = {"data": dict(DEFAULT_CONFIG["data"])}
    layout = modality.sample_layout(cfg, 500, torch.Generator().manual_seed(0))
    assert layout.x.shape == (500, 1, 16, 16) and layout.x.abs().sum() == 0
    train = modality.build_dataset("digits", cfg, "train")
    freq = torch.bincount(train.labels, minlength=10).double() / len(train)
    got = torch.bincount(layout.cond["label"], minlength=10).double() / 500
    assert (got - freq).abs().max() <= 1 / 500 + 1e-12  # at most one sample off per class
    again = modality.sample_layout(cfg, 500, torch.Generator().manual_seed(0))
    assert torch.equal(again.cond["label"], layout.cond["label"])
    other = modality.sample_layout(cfg, 500, torch.Generator().manual_seed(1))
    assert not torch.equal(other.cond["label"], layout.cond["label"])  # shuffled by the seed


def test_num_classes_auto_follows_the_data(tmp_path):
    from PIL import Image

    def net(data):
        cfg = {"data": {**DEFAULT_CONFIG["data"], **data}, "model": {"num_classes": -1}}
        return modality.build_network(cfg)

    assert net({}).num_classes == 10  # digits
    assert net({"dataset": "shapes"}).num_classes == 6
    for cls in ("cat", "dog", "eel"):
        (tmp_path / "labelled" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "labelled" / cls / "a.png")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    assert net({"path": str(tmp_path / "labelled")}).num_classes == 3
    assert net({"path": str(tmp_path / "flat")}).num_classes == 0
    assert net({"path": str(tmp_path / "flat")}).label_emb is None


def test_layout_from_a_held_dataset_matches_the_rebuilt_one():
    cfg = {"data": dict(DEFAULT_CONFIG["data"])}
    train = modality.build_dataset("digits", cfg, "train")
    held = modality.sample_layout(cfg, 50, torch.Generator().manual_seed(3), dataset=train)
    rebuilt = modality.sample_layout(cfg, 50, torch.Generator().manual_seed(3))
    assert held.x.shape == rebuilt.x.shape
    assert torch.equal(held.cond["label"], rebuilt.cond["label"])
