"""Class-conditional sampling, guidance and inpainting of the images plugin through the CLI."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import polydiff.registry as registry
from polydiff.cli import app

pytest.importorskip("polydiff_images")

TINY = """
[model]
base_channels = 8
channel_mult = [1, 2]
attention_levels = [1]
attention_head_dim = 8
norm_groups = 4
num_classes = 10

[train]
steps = 40
lr = 5e-3
warmup_steps = 5
batch_size = 8
threads = 1
cond_dropout = 0.2
snapshot_every = 0

[sample]
n = 4
steps = 3
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    registry.reset_registry()
    tmp = tmp_path_factory.mktemp("tasks")
    cfg = tmp / "tiny.toml"
    cfg.write_text(TINY)
    run = tmp / "run"
    result = CliRunner().invoke(app, ["train", "-m", "images", "--config", str(cfg), "--out", str(run)])
    assert result.exit_code == 0, result.output
    yield run
    registry.reset_registry()


def _sample(run_dir, out, *args):
    result = CliRunner().invoke(
        app, ["sample", str(run_dir), "--n", "3", "--steps", "3", "--out", str(out), *args]
    )
    return result


def _pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_class_and_guidance_change_the_samples(run_dir, tmp_path):
    outs = {}
    for name, args in {
        "c3": ["--class", "3"],
        "c3w3": ["--class", "3", "--guidance", "3"],
        "none": ["--class", "none"],
        "c3again": ["--class", "3"],
    }.items():
        result = _sample(run_dir, tmp_path / name, *args)
        assert result.exit_code == 0, result.output
        outs[name] = _pixels(tmp_path / name / "sample_0000.png")
    assert np.array_equal(outs["c3"], outs["c3again"])  # same seed, same class: same image
    # the condition reaches the network, and guidance extrapolates away from the null class
    assert not np.array_equal(outs["c3"], outs["none"])
    assert not np.array_equal(outs["c3"], outs["c3w3"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--class", "12"], "out of range"),
        (["--class", "x"], "expected integers"),
        (["--mask", "left"], "--mask needs --inpaint"),
        (["--inpaint", "missing.png", "--mask", "left"], "missing.png"),
    ],
)
def test_bad_task_options_are_one_line_errors(run_dir, tmp_path, args, message):
    result = _sample(run_dir, tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def _digit_png(path, size=16):
    img = np.zeros((size, size), dtype=np.uint8)
    img[3:13, 5:7] = 255
    img[3:5, 5:12] = 200
    Image.fromarray(img).save(path)
    return img


def test_inpaint_preset_keeps_the_known_half(run_dir, tmp_path):
    original = _digit_png(tmp_path / "digit.png")
    out = tmp_path / "inp"
    result = _sample(run_dir, out, "--inpaint", str(tmp_path / "digit.png"), "--mask", "left", "--resample", "2")
    assert result.exit_code == 0, result.output
    for i in range(3):
        got = _pixels(out / f"inpaint_{i:04d}.png")
        # the kept (right) half is the input, to within rounding
        assert np.abs(got[:, 8:] - original[:, 8:]).max() <= 1
    panel = Image.open(out / "inpaint_panel.png")
    # input | mask | masked input | 3 results, each 16 px + 1 px padding, upscaled x4
    assert panel.size == ((6 * 17 + 1) * 4, 17 * 4 + 4)


def test_inpaint_with_mask_file_and_bad_mask(run_dir, tmp_path):
    _digit_png(tmp_path / "digit.png")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, :16] = 255  # white = generate; a different size is resized
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = _sample(run_dir, tmp_path / "m", "--inpaint", str(tmp_path / "digit.png"),
                     "--mask", str(tmp_path / "mask.png"))
    assert result.exit_code == 0, result.output
    (tmp_path / "black.png").write_bytes((tmp_path / "mask.png").read_bytes())
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "black.png")
    result = _sample(run_dir, tmp_path / "b", "--inpaint", str(tmp_path / "digit.png"),
                     "--mask", str(tmp_path / "black.png"))
    assert result.exit_code == 2 and "no pixel to generate" in result.output
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = _sample(run_dir, tmp_path / "c", "--inpaint", str(tmp_path / "broken.png"), "--mask", "left")
    assert result.exit_code == 2 and "broken.png" in result.output and "Traceback" not in result.output


def test_evaluate_with_class_and_guidance(run_dir):
    result = CliRunner().invoke(
        app, ["evaluate", str(run_dir), "--n", "12", "--steps", "2", "--class", "none", "--guidance", "1"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "eval" / "heun-2-classnone-w1.json").read_text())
    assert report["class"] == "none" and report["metrics"]["quality"]["n_samples"] == 12


def test_evaluate_in_a_user_named_feature_space(run_dir, tmp_path, monkeypatch):
    (tmp_path / "userfeats.py").write_text(
        "def flat(x):\n    return x.flatten(1)[:, :6]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(
        app, ["evaluate", str(run_dir), "--n", "12", "--steps", "2", "--features", "userfeats:flat"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "eval" / "heun-2.json").read_text())
    quality = report["metrics"]["quality"]
    assert quality["features"] == "userfeats:flat" and "userfeats:flat" in quality["note"]
    assert "fd" in quality and "class_tv" not in quality
    bad = CliRunner().invoke(app, ["evaluate", str(run_dir), "--features", "userfeats:nope"])
    assert bad.exit_code == 2 and "no attribute" in bad.output and "Traceback" not in bad.output
