"""User image folders: layout, formats and modes, resize and crop, split, flips, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from polydiff_images import modality
from polydiff_images.folder import BACKGROUND, build_folder, load_image, scan_folder

from polydiff.protocol import DataError


def cfg(**data):
    out = modality.default_config()
    out["data"].update(data)
    return out


def build(root, split="train", **data):
    return modality.build_dataset(str(root), cfg(**data), split)


def save(path, array=None, *, mode="RGB", size=(12, 10), colour=(200, 30, 30), **kw):
    """Write an image (``array`` HxW[xC] uint8, or a plain ``colour``); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array) if array is not None else Image.new(mode, size, colour)
    im.save(path, **kw)
    return path


def halves(h=16, w=16):
    """Left half black, right half white: shows a left-right flip."""
    a = np.zeros((h, w), np.uint8)
    a[:, w // 2 :] = 255
    return a


# --- layout ------------------------------------------------------------------------------------


def test_nested_class_folders(tmp_path):
    save(tmp_path / "cat" / "a.png")
    save(tmp_path / "cat" / "sub" / "deeper" / "b.png")
    save(tmp_path / "dog" / "c.jpg")
    save(tmp_path / "dog" / "d.BMP")
    save(tmp_path / "dog" / "x" / "e.webp")
    (tmp_path / "README.txt").write_text("not an image")  # other files are skipped
    save(tmp_path / ".hidden" / "f.png")  # so are hidden folders
    save(tmp_path / "dog" / ".g.png")  # and hidden files

    index = scan_folder(tmp_path)
    assert index.classes == ("cat", "dog")
    assert [p.relative_to(tmp_path).as_posix() for p in index.files] == [
        "cat/a.png", "cat/sub/deeper/b.png", "dog/c.jpg", "dog/d.BMP", "dog/x/e.webp",
    ]
    assert index.labels == (0, 0, 1, 1, 1)

    ds = build(tmp_path, test_fraction=0.0, channels=3, resolution=8)
    assert len(ds) == 5 and ds.classes == ("cat", "dog")
    item = ds[4]
    assert item["x"].shape == (3, 8, 8) and item["x"].dtype == torch.float32
    assert item["cond"] == {"label": 1}
    batch = modality.collate([ds[i] for i in range(5)])
    assert batch.cond["label"].tolist() == [0, 0, 1, 1, 1]


def test_flat_folder_is_unlabelled(tmp_path):
    save(tmp_path / "a.png")
    save(tmp_path / "b.png", mode="L", colour=128)
    (tmp_path / "empty").mkdir()  # subfolders without images do not make classes
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "n.txt").write_text("x")
    ds = build(tmp_path, test_fraction=0.0)
    assert len(ds) == 2 and ds.labels is None and ds.classes is None
    assert set(ds[0]) == {"x"}
    batch = modality.collate([ds[0], ds[1]])
    assert batch.x.shape == (2, 3, 32, 32) and batch.cond == {}  # auto: an RGB file -> 3


# --- decoding, colour, resizing ----------------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "jpg", "jpeg", "bmp", "webp"])
def test_each_format(tmp_path, ext):
    kw = {"quality": 100} if ext in ("jpg", "jpeg", "webp") else {}
    path = save(tmp_path / f"a.{ext}", size=(20, 20), colour=(40, 120, 200), **kw)
    x = load_image(path, 16, 3)
    assert x.shape == (3, 16, 16) and x.dtype == np.uint8
    assert np.abs(x.reshape(3, -1).mean(1) - (40, 120, 200)).max() < 4  # lossy formats: close


def _modes():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent
    la = np.zeros((8, 8, 2), np.uint8)
    la[..., 1] = 128  # black at half opacity
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 1  # index 1 (red) is transparent
    i16 = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    return {
        "L": (Image.new("L", (8, 8), 100), [100, 100, 100]),
        "RGB": (Image.new("RGB", (8, 8), (10, 20, 30)), [10, 20, 30]),
        "RGBA-transparent": (Image.fromarray(rgba, "RGBA"), list(BACKGROUND)),
        "LA-half": (Image.fromarray(la, "LA"), [127, 127, 127]),  # 50 % over white
        "P": (pal, [255, 0, 0]),
        "P-transparency": (pal_t, list(BACKGROUND)),
        "1": (Image.new("1", (8, 8), 1), [255, 255, 255]),
        "I;16": (i16, [255, 255, 255]),
    }


@pytest.mark.parametrize("name", list(_modes()))
def test_modes_and_alpha(tmp_path, name):
    im, rgb = _modes()[name]
    path = tmp_path / "a.png"
    im.save(path, **({"transparency": 1} if name == "P-transparency" else {}))
    x3 = load_image(path, 8, 3)
    assert x3.shape == (3, 8, 8)
    assert np.abs(x3.astype(int) - np.array(rgb)[:, None, None]).max() <= 1, x3[:, 0, 0]
    x1 = load_image(path, 8, 1)
    luma = (299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2]) / 1000  # ITU-R 601, PIL's conversion
    assert x1.shape == (1, 8, 8) and abs(int(x1[0, 0, 0]) - luma) <= 1


def test_values_span_minus_one_to_one(tmp_path):
    save(tmp_path / "a.png", halves())
    x = build(tmp_path, test_fraction=0.0).images
    assert x.dtype == torch.float32 and x.min() == -1.0 and x.max() == 1.0


def test_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(13, 7), (7, 13), (1, 40), (300, 17)]):
        save(tmp_path / f"{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    ds = build(tmp_path, test_fraction=0.0, resolution=16, channels=3)
    assert ds.images.shape == (4, 3, 16, 16)
    assert ds.images.min() >= -1 and ds.images.max() <= 1


def test_centre_crop(tmp_path):
    bands = np.zeros((16, 48, 3), np.uint8)
    bands[:, :16] = (255, 0, 0)
    bands[:, 16:32] = (0, 255, 0)
    bands[:, 32:] = (0, 0, 255)
    wide = load_image(save(tmp_path / "wide.png", bands), 16, 3)
    assert (wide == np.array([0, 255, 0])[:, None, None]).all()  # the middle third, exactly
    tall = load_image(save(tmp_path / "tall.png", bands.transpose(1, 0, 2).copy()), 16, 3)
    assert (tall == np.array([0, 255, 0])[:, None, None]).all()

    # shrinking: a 64x32 image whose centre 32x32 is white (grey sides) -> white at 8x8
    img = np.full((32, 64), 90, np.uint8)
    img[:, 16:48] = 255
    small = load_image(save(tmp_path / "big.png", img), 8, 1)[0]
    assert (small[:, 1:-1] >= 250).all()  # the interior; Lanczos lets the edge columns see grey
    assert small.min() < 255

    # and a 2x4 image upscaled keeps its left-right order (centre 2x2 = columns 1, 2)
    tiny = np.array([[0, 50, 200, 255]] * 2, np.uint8)
    up = load_image(save(tmp_path / "tiny.png", tiny), 8, 1)[0].astype(int)
    assert (np.diff(up, axis=1) >= -2).all() and up[:, 0].mean() < 80 and up[:, -1].mean() > 170


def test_exif_orientation(tmp_path):
    a = halves(8, 16)  # 8 high, 16 wide; black left, white right
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg", 8, 1)[0].astype(int)
    # displayed upright the image is 16 high, 8 wide: the crop is its middle, black on top
    assert x[:2].mean() < 40 and x[-2:].mean() > 215


# --- split and flips ---------------------------------------------------------------------------


def test_stratified_deterministic_split(tmp_path):
    for c in ("a", "b"):
        for i in range(10):
            save(tmp_path / c / f"{i}.png", mode="L", size=(4, 4), colour=10 * i)
    kw = {"test_fraction": 0.2, "resolution": 4}
    train, test = build(tmp_path, "train", **kw), build(tmp_path, "test", **kw)
    assert len(train) == 16 and len(test) == 4
    assert test.labels.tolist() == [0, 0, 1, 1]
    assert not set(train.files) & set(test.files)
    again = build(tmp_path, "test", **kw)
    assert again.files == test.files and torch.equal(again.images, test.images)
    other = build(tmp_path, "test", split_seed=1, **kw)
    assert other.files != test.files
    assert len(build(tmp_path, "train", test_fraction=0.0, resolution=4)) == 20


def test_hflip_train_only_and_reproducible(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", halves())
    train = build(tmp_path, "train", hflip=True, test_fraction=0.5)
    test = build(tmp_path, "test", hflip=True, test_fraction=0.5)
    assert train.hflip and not test.hflip

    def draws(ds, seed):
        torch.manual_seed(seed)
        return [bool(ds[i % len(ds)]["x"][0, 0, 0] > 0) for i in range(40)]  # flipped?

    first = draws(train, 0)
    assert 5 < sum(first) < 35  # about half
    assert draws(train, 0) == first  # the global RNG decides: same seed, same flips
    assert draws(train, 1) != first
    assert not any(draws(test, 0))
    assert not build(tmp_path, "train", test_fraction=0.5).hflip  # off by default
    # the dataset's images are never flipped (the metrics read them)
    assert (train.images[:, 0, :, 0] == -1).all()


def test_hflip_resume_is_bit_exact(tmp_path):
    from polydiff.checkpoint import load_all_weights
    from polydiff.config import resolve
    from polydiff.train import latest_checkpoint, train

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(4):
            save(tmp_path / "data" / c / f"{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    over = {
        "data": {"path": str(tmp_path / "data"), "resolution": 8, "hflip": True, "test_fraction": 0.0},
        "model": {"base_channels": 8, "channel_mult": [1], "attention_levels": [],
                  "attention_head_dim": 8, "norm_groups": 4},
        "train": {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "log_every": 1, "threads": 1,
                  "plot_every": 0, "snapshot_every": 0, "warmup_steps": 1},
    }
    straight = tmp_path / "straight"
    train(modality, resolve(modality, overrides=over), straight, sample_at_end=False)
    halted = tmp_path / "halted"
    first = resolve(modality, overrides={**over, "train": {**over["train"], "steps": 2}})
    train(modality, first, halted, sample_at_end=False)
    train(modality, resolve(modality, overrides=over), halted, resume=True, sample_at_end=False)
    a, _ = load_all_weights(latest_checkpoint(straight))
    b, _ = load_all_weights(latest_checkpoint(halted))
    assert a.keys() == b.keys()
    for group in a:
        for key, value in a[group].items():
            assert torch.equal(value, b[group][key]), (group, key)


# --- errors ------------------------------------------------------------------------------------


def one_line_error(root, match, split="train", **data):
    with pytest.raises(DataError) as err:
        build(root, split, **data)
    msg = str(err.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_corrupt_and_truncated_files_are_named(tmp_path):
    save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"this is not a png at all")
    msg = one_line_error(tmp_path, "bad.png", test_fraction=0.0)
    assert "cannot read" in msg
    (tmp_path / "bad.png").unlink()
    whole = (tmp_path / "good.png").read_bytes()
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    save(tmp_path / "cut.png", arr)
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:300])
    one_line_error(tmp_path, "cut.png", test_fraction=0.0)
    assert whole


def test_layout_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(empty, "empty")
    (empty / ".DS_Store").write_text("")
    one_line_error(empty, "the folder is empty")

    texts = tmp_path / "texts"
    (texts / "sub").mkdir(parents=True)
    (texts / "a.txt").write_text("x")
    (texts / "b.gif").write_bytes(b"GIF89a")
    one_line_error(texts, "no supported images")

    mixed = tmp_path / "mixed"
    save(mixed / "cat" / "a.png")
    save(mixed / "loose.png")
    one_line_error(mixed, "loose.png")

    hollow = tmp_path / "hollow"
    save(hollow / "cat" / "a.png")
    (hollow / "dog" / "sub").mkdir(parents=True)
    one_line_error(hollow, "dog: class folder holds no supported images")

    one_line_error(tmp_path / "mixed" / "loose.png", "not a folder")
    one_line_error(tmp_path / "missing", "not found")


def test_split_and_option_errors(tmp_path):
    save(tmp_path / "a.png")
    save(tmp_path / "b.png")
    one_line_error(tmp_path, "test split is empty", "test", test_fraction=0.0)
    one_line_error(tmp_path, "data.test_fraction", test_fraction=1.0)
    one_line_error(tmp_path, "data.channels", channels=4)
    with pytest.raises(ValueError, match="split"):
        build_folder(tmp_path, cfg()["data"], "validation")
    assert len(build(tmp_path, "test", test_fraction=0.5)) == 1
