"""The out-of-tree example plugin, found through a real entry point, trained through the CLI."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from _distfactory import make_dist
from typer.testing import CliRunner

import polydiff.registry as registry
from polydiff.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"


@pytest.fixture
def curves_installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "polydiff_curves", site / "polydiff_curves")
    make_dist(site, "polydiff-curves", "0.1.0", {"curves": "polydiff_curves:modality"}, {})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry.reset_registry()
    yield
    registry.reset_registry()
    import sys

    for mod in [m for m in sys.modules if m.startswith("polydiff_curves")]:
        del sys.modules[mod]


def test_listed_trained_and_sampled(curves_installed, tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["modalities"])
    assert listing.exit_code == 0
    line = next(ln for ln in listing.output.splitlines() if ln.strip().startswith("curves"))
    assert "polydiff-curves" in line and "ok" in line

    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-m", "curves", "--out", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "samples" / "samples.png").exists()
    values = np.loadtxt(out / "samples" / "samples.csv", delimiter=",")
    assert values.shape == (16, 64) and np.isfinite(values).all()


def test_user_file_errors_name_the_file(curves_installed, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 2)))
    result = CliRunner().invoke(app, ["train", "-m", "curves", "--data", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "shape" in result.stderr
    assert "Traceback" not in result.output
