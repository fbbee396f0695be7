from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from polydiff_images import modality
from polydiff_images.writer import to_uint8


def test_writes_pngs_and_grid(tmp_path):
    samples = torch.linspace(-1.5, 1.5, 16 * 16).repeat(10).reshape(10, 1, 16, 16)
    paths = modality.write_samples(samples, tmp_path / "out", prefix="s")
    assert paths[0].name == "s_grid.png"
    assert len(paths) == 11
    assert all(p.exists() for p in paths)
    with Image.open(paths[1]) as im:
        assert im.mode == "L" and im.size == (16, 16)
        arr = np.asarray(im)
    assert arr.min() == 0 and arr.max() == 255  # clamped
    with Image.open(paths[0]) as grid:
        grid.load()
        # 4 columns x 3 rows of 16px cells with 1px gaps, upscaled x4
        assert grid.size == ((4 * 17 + 1) * 4, (3 * 17 + 1) * 4)


def test_rgb(tmp_path):
    paths = modality.write_samples(torch.zeros(2, 3, 8, 8), tmp_path)
    with Image.open(paths[1]) as im:
        assert im.mode == "RGB"
        assert np.asarray(im)[0, 0].tolist() == [128, 128, 128]


def test_uint8_mapping():
    x = torch.tensor([-1.0, 0.0, 1.0, float("nan")]).reshape(1, 1, 1, 4)
    assert to_uint8(x).reshape(-1).tolist() == [0, 128, 255, 128]


def test_bad_channels(tmp_path):
    with pytest.raises(ValueError, match="channels"):
        modality.write_samples(torch.zeros(1, 2, 8, 8), tmp_path)
