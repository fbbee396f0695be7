"""A tiny end-to-end run of the real images plugin, found by its entry point, through the CLI."""

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

[train]
steps = 3
batch_size = 8
threads = 1

[sample]
n = 4
steps = 2
"""


@pytest.fixture
def real_registry(monkeypatch):
    monkeypatch.delenv("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry.reset_registry()
    yield
    registry.reset_registry()


def test_images_train_then_sample(real_registry, tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["modalities"])
    line = next(ln for ln in listing.output.splitlines() if ln.strip().startswith("images"))
    assert "polydiff-images" in line and "ok" in line

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "-m", "images", "--config", str(cfg), "--out", str(run)])
    assert result.exit_code == 0, result.output
    grid = Image.open(run / "samples" / "sample_grid.png")
    assert grid.size[0] > 16 and grid.size[1] > 16

    out = tmp_path / "more"
    result = runner.invoke(
        app, ["sample", str(run), "--n", "3", "--sampler", "dpmpp_2m", "--steps", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("sample_*.png"))
    assert len(pngs) == 4  # three samples and the grid
    assert Image.open(pngs[0]).size == (16, 16) or Image.open(pngs[-1]).size == (16, 16)
