"""The example scripts run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_images_example_trains_and_samples_with_two_solvers(tmp_path):
    pytest.importorskip("polydiff_images")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "images.py"), "--steps", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for sampler in ("dpmpp_2m", "heun"):
        assert (out / "samples" / sampler / "sample_grid.png").exists()
