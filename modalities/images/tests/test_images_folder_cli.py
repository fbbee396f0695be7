"""`polydiff train --modality images --data FOLDER` end to end, and a corrupt image's error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _images_tiny import tiny_toml
from PIL import Image
from typer.testing import CliRunner

from polydiff.cli import app

TINY = tiny_toml(data='resolution = 8\nchannels = 3\ntest_fraction = 0.25\nhflip = true', model='num_classes = 2')


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name, size in (("cats", (9, 12)), ("dogs", (14, 10))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "data" / name / f"{i}.png")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    return tmp_path / "data", cfg


def test_train_on_a_folder(images_registry, folder, tmp_path):
    data, cfg = folder
    run = tmp_path / "run"
    args = ["train", "-m", "images", "--data", str(data), "--config", str(cfg), "--out", str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["data"]["path"] == str(data)
    with Image.open(run / "samples" / "sample_0000.png") as im:
        assert im.size == (8, 8) and im.mode == "RGB"


def test_corrupt_image_is_one_line_exit_2(images_registry, folder, tmp_path):
    data, cfg = folder
    (data / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    args = ["train", "-m", "images", "--data", str(data), "--config", str(cfg),
            "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if "broken.png" in ln]
    assert len(lines) == 1 and "cannot read" in lines[0], result.output
