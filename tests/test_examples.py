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


def test_graphs_example_quick_mode(tmp_path):
    pytest.importorskip("polydiff_graphs")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "graphs.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gdss    MMD²" in proc.stdout
    assert (out / "samples" / "data-sizes" / "samples.png").exists()
    assert len(list((out / "samples" / "nodes-16").glob("*.graphml"))) == 8


def test_audio_example_trains_samples_and_scores(tmp_path):
    pytest.importorskip("polydiff_audio")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "audio.py"), "--steps", "2", "--quick-test", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for sampler in ("dpmpp_2m", "heun"):
        assert (out / "samples" / sampler / "sample_grid.png").exists()
        assert (out / "samples" / sampler / "sample_0007.wav").exists()
    assert "pitch accuracy" in proc.stdout and "classifier FID" in proc.stdout


def test_points_example_quick_mode(tmp_path):
    pytest.importorskip("polydiff_points")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "points.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1-NNA-CD" in proc.stdout and "mirror baseline" in proc.stdout
    assert (out / "samples" / "samples.png").exists()
    assert len(list((out / "completion").glob("inpaint-*.ply"))) == 8
