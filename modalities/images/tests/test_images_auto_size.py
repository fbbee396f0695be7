"""``data.resolution`` / ``data.channels`` = 0 (the defaults): each source at its natural size.

digits 16x16 gray, shapes 32x32 RGB, a folder 32 px with 1 channel when every image is stored
grayscale (else 3); explicit values win; bad values are one-line DataErrors; training, ``sample``,
``evaluate`` and inpainting resolve them identically.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _images_tiny import tiny_toml
from PIL import Image
from polydiff_images import modality
from polydiff_images.data import resolve_data_config
from polydiff_images.folder import folder_channels, scan_folder
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.protocol import DataError

TINY = tiny_toml()


def cfg(**data):
    out = modality.default_config()
    out["data"].update(data)
    return out


def size(data: dict) -> tuple[int, int]:
    resolved = resolve_data_config(data)
    return resolved["resolution"], resolved["channels"]


def in_channels(config) -> int:
    return modality.build_network(config).conv_in.in_channels


def save_images(root, modes, size=(10, 14)):
    """One image per mode under ``root`` (a flat folder); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for i, mode in enumerate(modes):
        colour = (200, 40, 40) if mode in ("RGB", "RGBA") else 1 if mode == "1" else 150
        Image.new(mode, size, colour).save(root / f"{i}.png")
    return root


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


# --- resolution rules --------------------------------------------------------------------------


def test_defaults_are_auto_and_builtins_resolve_to_their_native_size():
    assert modality.default_config()["data"]["resolution"] == 0
    assert modality.default_config()["data"]["channels"] == 0
    assert size({}) == (16, 1)  # the default data set is digits
    assert size({"dataset": "digits"}) == (16, 1)
    assert size({"dataset": "shapes"}) == (32, 3)
    assert size({"dataset": "shapes", "resolution": "auto"}) == (32, 3)
    # resolving is idempotent and leaves the input alone
    data = {"dataset": "shapes"}
    assert resolve_data_config(resolve_data_config(data)) == resolve_data_config(data)
    assert data == {"dataset": "shapes"}


def test_explicit_values_win():
    assert size({"dataset": "digits", "resolution": 8}) == (8, 1)
    assert size({"dataset": "digits", "resolution": 32, "channels": 3}) == (32, 3)
    assert size({"dataset": "shapes", "channels": 1}) == (32, 1)
    assert size({"dataset": "shapes", "resolution": 16}) == (16, 3)
    assert size({"path": "/no/such/folder", "resolution": 24, "channels": 3}) == (24, 3)  # no scan

    digits = modality.build_dataset("digits", cfg(resolution=8, channels=3), "test")
    assert digits[0]["x"].shape == (3, 8, 8)
    assert (digits.data[:, 0] == digits.data[:, 2]).all()  # the gray digit in each channel
    gray_shapes = modality.build_dataset("shapes", cfg(dataset="shapes", channels=1), "test")
    assert gray_shapes[0]["x"].shape == (1, 32, 32)
    assert in_channels(cfg(dataset="shapes", channels=1)) == 1
    assert in_channels(cfg(dataset="digits", channels=3)) == 3


def test_builtins_build_at_their_natural_size():
    digits = modality.build_dataset("digits", cfg(), "test")
    assert digits[0]["x"].shape == (1, 16, 16)
    assert in_channels(cfg()) == 1
    shapes = modality.build_dataset("shapes", cfg(dataset="shapes"), "test")
    assert shapes[0]["x"].shape == (3, 32, 32)
    assert in_channels(cfg(dataset="shapes")) == 3
    layout = modality.sample_layout(cfg(dataset="shapes"), 6, __import__("torch").Generator())
    assert layout.x.shape == (6, 3, 32, 32)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"resolution": -1}, "data.resolution"),
        ({"resolution": 4}, "data.resolution"),  # below the built-ins' 8 px
        ({"resolution": 12.5}, "data.resolution"),
        ({"resolution": "big"}, "data.resolution"),
        ({"channels": 2}, "data.channels"),
        ({"channels": -3}, "data.channels"),
        ({"channels": 4, "dataset": "shapes"}, "data.channels"),
        ({"channels": True}, "data.channels"),
    ],
)
def test_bad_values_are_one_line_data_errors(data, key, tmp_path):
    with pytest.raises(DataError) as err:
        resolve_data_config(data)
    assert key in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError):  # the network checks them the same way
        modality.build_network(cfg(**data))
    save_images(tmp_path / "imgs", ["L"])
    if data.get("resolution") != 4:  # 4 px is fine for a folder
        with pytest.raises(DataError):
            modality.build_dataset(str(tmp_path / "imgs"), cfg(path=str(tmp_path / "imgs"), **data), "train")


# --- folders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modes", "channels"),
    [
        (["L", "L", "LA"], 1),
        (["1", "I;16", "L"], 1),
        (["L", "RGB", "L"], 3),  # one colour file makes the folder colour
        (["RGBA", "RGB"], 3),
        (["P"], 3),  # palette images count as colour, whatever their palette
    ],
)
def test_folder_channels_from_the_files_modes(tmp_path, modes, channels):
    if "I;16" in modes:
        root = save_images(tmp_path / "d", [m for m in modes if m != "I;16"])
        Image.fromarray(np.full((10, 14), 30000, np.uint16)).save(root / "wide.png")
    else:
        root = save_images(tmp_path / "d", modes)
    config = cfg(path=str(root), test_fraction=0.0)
    assert size(config["data"]) == (32, channels)
    ds = modality.build_dataset(str(root), config, "train")
    assert ds.images.shape == (len(modes), channels, 32, 32)
    assert in_channels(config) == channels
    # explicit values still win
    assert modality.build_dataset(str(root), cfg(path=str(root), test_fraction=0.0, channels=4 - channels,
                                                 resolution=8), "train").images.shape[1:] == (4 - channels, 8, 8)


def test_folder_modes_read_from_headers_once(tmp_path, monkeypatch):
    """Auto channels open each file lazily (no decoding), once for both splits and the network."""
    import PIL.Image

    root = tmp_path / "gray"
    for c in ("a", "b"):
        save_images(root / c, ["L"] * 4)
    # a file whose pixel data is cut off still has a readable header: no pixels were decoded
    cut = tmp_path / "cut"
    save_images(cut, ["L"])
    arr = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(arr).save(cut / "1.png")
    (cut / "1.png").write_bytes((cut / "1.png").read_bytes()[:200])
    assert folder_channels(scan_folder(cut)) == 1

    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    config = cfg(path=str(root), test_fraction=0.25)
    train = modality.build_dataset(str(root), config, "train")
    test = modality.build_dataset(str(root), config, "test")
    assert in_channels(config) == 1
    assert train.images.shape == (6, 1, 32, 32) and test.images.shape == (2, 1, 32, 32)
    assert len(opened) == 8 + 8  # headers of all 8 files once, then the 8 decodes
    # a changed file is read again
    Image.new("RGB", (10, 14), (0, 200, 0)).save(root / "b" / "3.png")
    assert in_channels(config) == 3


def test_folder_header_errors_name_the_file(tmp_path):
    root = save_images(tmp_path / "d", ["L"])
    (root / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as err:
        modality.build_network(cfg(path=str(root)))
    assert "bad.png" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found|no such file"):
        modality.build_network(cfg(path=str(tmp_path / "missing")))


# --- through the CLI ---------------------------------------------------------------------------


def _train(run, tiny, *data):
    args = ["train", "-m", "images", *data, "--config", str(tiny), "--out", str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((run / "config.json").read_text())["config"]["data"]


def test_cli_shapes_train_sample_evaluate_at_32px_rgb(images_registry, tiny, tmp_path, monkeypatch):
    import polydiff_images.evaluation as evaluation

    run = tmp_path / "run"
    data = _train(run, tiny, "--data", "shapes")
    assert data["dataset"] == "shapes" and data["resolution"] == 0 and data["channels"] == 0
    with Image.open(run / "samples" / "sample_0000.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"

    out = tmp_path / "more"
    result = CliRunner().invoke(app, ["sample", str(run), "--n", "2", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out / "sample_0000.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"

    seen = {}

    def shapes_only(samples, dataset, real_test, *args, real_train=None, **kw):
        # record what `evaluate` compares; scoring 1,200 images would take seconds
        seen.update(samples=tuple(samples.shape[1:]), test=tuple(real_test.shape[1:]),
                    train=tuple(real_train.shape[1:]), dataset=dataset)
        return {"n_samples": len(samples), "features": "none", "n_real": len(real_test)}

    monkeypatch.setattr(evaluation, "evaluate_images", shapes_only)
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--n", "8", "--sampler", "euler", "--steps", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"samples": (3, 32, 32), "test": (3, 32, 32), "train": (3, 32, 32), "dataset": "shapes"}
    assert evaluation._classifier_for("shapes", seen["samples"]) is not None  # the shapes classifier


def test_cli_gray_folder_trains_samples_and_inpaints_in_one_channel(images_registry, tiny, tmp_path):
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "gray"
    data_dir.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(data_dir / f"{i}.png")
    run = tmp_path / "run"
    data = _train(run, tiny, "--data", str(data_dir))
    assert data["channels"] == 0
    with Image.open(run / "samples" / "sample_0000.png") as im:
        assert im.size == (32, 32) and im.mode == "L"

    photo = tmp_path / "photo.jpg"  # a colour input is read the way the run's data is: gray
    Image.new("RGB", (40, 30), (200, 100, 50)).save(photo)
    out = tmp_path / "inp"
    result = CliRunner().invoke(
        app, ["sample", str(run), "--n", "1", "--steps", "2", "--out", str(out),
              "--inpaint", str(photo), "--mask", "left"],
    )
    assert result.exit_code == 0, result.output
    with Image.open(out / "inpaint_0000.png") as im:
        assert im.size == (32, 32) and im.mode == "L"


def test_cli_colour_folder_trains_in_rgb(images_registry, tiny, tmp_path):
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "mixed"
    data_dir.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(data_dir / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(data_dir / "c.jpg")
    run = tmp_path / "run"
    _train(run, tiny, "--data", str(data_dir))
    with Image.open(run / "samples" / "sample_0000.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"
