"""The bad-input battery for the images plugin: data folders (symbolic-link loops, FIFOs, folder
cycles, broken links, undecodable files, ``--skip-bad``), the guarded reader of every user image
(decompression bombs, FIFOs as masks), out-of-range sizes, and the atomic writer."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import polydiff.registry as registry
from polydiff.battery import assert_refused, tree_state
from polydiff.cli import app
from polydiff.files import clear_skipped, skipped_summary
from polydiff.protocol import DataError

pytest.importorskip("polydiff_images")

from polydiff_images.folder import build_folder, open_image, scan_folder  # noqa: E402
from polydiff_images.inputs import read_mask  # noqa: E402
from polydiff_images.writer import write_samples  # noqa: E402

runner = CliRunner()

TINY = """
[data]
resolution = 8
test_fraction = 0.0
[model]
base_channels = 8
channel_mult = [1]
attention_levels = []
attention_head_dim = 8
norm_groups = 4
[train]
steps = 2
batch_size = 4
threads = 1
snapshot_every = 0
plot_every = 0
[sample]
n = 2
steps = 1
"""


@pytest.fixture
def real_registry(monkeypatch):
    monkeypatch.delenv("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry.reset_registry()
    clear_skipped()
    yield
    registry.reset_registry()
    clear_skipped()


@pytest.fixture
def no_hang():
    """Fail instead of hanging forever when something opens a FIFO."""
    def boom(*_):
        raise TimeoutError("blocked: something opened a FIFO")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _png(path: Path, value: int = 0, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def _hostile_folder(root: Path) -> Path:
    """Four good images and one of each hostile entry a data folder can hold."""
    for i in range(4):
        _png(root / f"img{i}.png", 40 * i)
    os.symlink("self.png", root / "self.png")  # a symbolic-link loop
    os.symlink("gone.png", root / "broken.png")  # a broken link
    os.mkfifo(root / "pipe.png")  # opening it would block forever
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "up")  # a folder cycle back to the root
    return root


def test_walk_skips_and_names_every_hostile_entry(tmp_path, no_hang):
    clear_skipped()
    index = scan_folder(_hostile_folder(tmp_path / "data"))
    assert [p.name for p in index.files] == [f"img{i}.png" for i in range(4)]
    reasons = {s.path.name: s.reason for s in index.skipped}
    assert reasons["self.png"] == "symbolic-link loop"
    assert reasons["broken.png"] == "broken symbolic link"
    assert reasons["pipe.png"] == "a FIFO"
    assert "link cycle" in reasons["up"]
    assert skipped_summary().startswith(f"4 entries under {tmp_path / 'data'}: broken.png (broken")


def test_undecodable_image_is_an_error_or_skipped_with_skip_bad(tmp_path, no_hang):
    clear_skipped()
    root = _hostile_folder(tmp_path / "data")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = {"resolution": 8, "channels": 1, "test_fraction": 0.0}
    with pytest.raises(DataError) as err:
        build_folder(root, cfg, "train")
    msg = str(err.value)
    assert "bad.png" in msg and "--skip-bad" in msg and "\n" not in msg
    data = build_folder(root, {**cfg, "skip_bad": True}, "train")
    assert len(data) == 4
    assert "bad.png (cannot read the image" in skipped_summary(k=10)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_subfolder_is_counted(tmp_path):
    root = tmp_path / "data"
    _png(root / "a.png")
    locked = root / "locked"
    _png(locked / "b.png")
    locked.chmod(0)
    try:
        index = scan_folder(root)
        assert [s.path.name for s in index.skipped] == ["locked"]
    finally:
        locked.chmod(0o755)


def test_guarded_reader(tmp_path, monkeypatch, no_hang):
    os.mkfifo(tmp_path / "mask.png")
    with pytest.raises(DataError, match="not a regular file"):
        open_image(tmp_path / "mask.png")
    with pytest.raises(DataError, match="file not found"):
        open_image(tmp_path / "none.png")
    bomb = _png(tmp_path / "bomb.png", size=64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # 64x64 is now a "bomb"
    like = np.zeros((1, 8, 8), dtype=np.float32)
    import torch

    for spec in (bomb, tmp_path / "mask.png"):
        with pytest.raises(DataError) as err:
            read_mask(str(spec), {"data": {"resolution": 8, "channels": 1}}, torch.from_numpy(like))
        assert str(spec) in str(err.value) and "\n" not in str(err.value)


def test_writer_leaves_no_partial_file_under_a_final_name(tmp_path, monkeypatch):
    import torch

    out = tmp_path / "s"
    write_samples(torch.zeros(2, 1, 8, 8), out)
    before = tree_state(out)
    calls = {"n": 0}
    save = Image.Image.save

    def dying_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second file: half-written, then the process "dies"
            Path(fp).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        write_samples(torch.ones(2, 1, 8, 8), out)
    after = tree_state(out)
    # the grid was replaced whole; sample_0000 is still the old file; no temporary file remains
    assert after.keys() == before.keys()
    assert after["sample_0000.png"] == before["sample_0000.png"]
    for name in after:
        Image.open(out / name).load()


def test_cli_data_folder_battery(real_registry, tmp_path, no_hang):
    root = _hostile_folder(tmp_path / "data")
    (root / "bad.png").write_bytes(b"not an image")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    args = ["train", "-m", "images", "--data", str(root), "--config", str(cfg), "--out", str(run)]
    assert_refused(lambda: runner.invoke(app, args), tmp_path, "bad.png", "--skip-bad")
    result = runner.invoke(app, [*args, "--skip-bad"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "data skipped" in text and "5 entries" in text


def test_cli_resolution_out_of_range(real_registry, tmp_path):
    cfg = tmp_path / "huge.toml"
    cfg.write_text("[data]\nresolution = 100000\n")
    assert_refused(
        lambda: runner.invoke(app, ["train", "-m", "images", "--config", str(cfg), "--out",
                                    str(tmp_path / "run")]),
        tmp_path, "data.resolution = 100000", "1024",
    )


def test_cli_inpaint_inputs(real_registry, tmp_path, monkeypatch, no_hang):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "-m", "images", "--config", str(cfg), "--out", str(run)])
    assert result.exit_code == 0, result.output
    image = _png(tmp_path / "in" / "digit.png", 200, size=16)
    bomb = _png(tmp_path / "in" / "bomb.png", 255, size=64)
    os.mkfifo(tmp_path / "in" / "fifo.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)
    base = ["sample", str(run), "--inpaint", str(image), "--out", str(tmp_path / "s")]
    cases = [
        (["--mask", str(bomb)], ["bomb.png", "too large"]),
        (["--mask", str(tmp_path / "in" / "fifo.png")], ["fifo.png", "not a regular file"]),
        (["--mask", "nowhere"], ["nowhere", "preset"]),
        (["--mask", "left", "--recon-guidance", "nan"], ["--recon-guidance"]),
    ]
    for extra, needles in cases:
        assert_refused(lambda extra=extra: runner.invoke(app, base + extra), tmp_path, *needles)


def test_cli_evaluate_never_replaces_a_report(real_registry, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "-m", "images", "--config", str(cfg), "--out", str(run)]).exit_code == 0
    args = ["evaluate", str(run), "--n", "4", "--steps", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    kept = tree_state(run / "eval")
    second = runner.invoke(app, [*args, "--seed", "3"])
    assert second.exit_code == 0, second.output
    after = tree_state(run / "eval")
    assert {k: after[k] for k in kept} == kept and "heun-1-2.json" in after
    assert_refused(lambda: runner.invoke(app, [*args, "--guidance", "nan"]), tmp_path, "--guidance nan")
    assert_refused(lambda: runner.invoke(app, [*args, "--features", str(tmp_path / "x.pt2")]),
                   tmp_path, "x.pt2", "not found")
