"""Train, sample, complete and evaluate through the command line, on a tiny model and 64 points."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.cli.launch import available_workers
from polydiff.train import read_metrics

runner = CliRunner()
OUTPUT: dict[str, str] = {}

TOML = """
[data]
num_points = 64
train_per_class = 2
test_per_class = 1
[model]
width = 16
blocks = 1
k = 8
[train]
steps = 3
batch_size = 4
compile = false
snapshot_every = 0
plot_every = 0
device = "cpu"
[sample]
n = 8
steps = 2
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("points-cli")
    (root / "tiny.toml").write_text(TOML)
    out = root / "run"
    result = runner.invoke(app, ["train", "--modality", "points", "--config", str(root / "tiny.toml"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    OUTPUT["train"] = result.output
    return out


def test_the_default_trains_on_two_processes(run_dir):
    """The points default sets train.processes = 2: one command, two data-parallel ranks, one
    report (rank 0's), one run folder with every step."""
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg = cfg.get("config", cfg)
    assert cfg["train"]["processes"] == 2
    two = available_workers("cpu") >= 2
    assert ("on 2 processes" in OUTPUT["train"]) == two
    assert OUTPUT["train"].count("done") == 1 and "Traceback" not in OUTPUT["train"]
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")][-1] == 3


def test_the_ranks_train_the_configuration_resolved_here(tmp_path, monkeypatch):
    """Each rank gets the configuration the command resolved, not one it resolves again (a default
    changed in this process, as the conftest does, or a config file edited meanwhile)."""
    from polydiff_points.defaults import DEFAULT_CONFIG

    monkeypatch.setitem(DEFAULT_CONFIG["model"], "heads", 2)  # only this process knows it
    (tmp_path / "tiny.toml").write_text(TOML)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--modality", "points", "--config", str(tmp_path / "tiny.toml"),
                                 "--out", str(out), "--steps", "1", "--processes", "2"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg.get("config", cfg)["model"]["heads"] == 2


def test_sigterm_reaches_the_ranks_and_saves_a_checkpoint(tmp_path):
    (tmp_path / "tiny.toml").write_text(TOML)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "polydiff", "train", "-m", "points", "--config", str(tmp_path / "tiny.toml"),
         "--out", str(out), "--steps", "100000", "--processes", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"))
    try:
        for line in proc.stderr:  # the first progress line: the ranks are training
            if line.startswith("train:"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "stopped: SIGTERM" in err and "Traceback" not in err
    step = json.loads((out / "checkpoints" / "latest.json").read_text())["step"]
    assert 0 < step < 100000


def _read_ply(path):
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    n = int([ln for ln in head.decode().splitlines() if ln.startswith("element vertex")][0].split()[-1])
    colored = b"uchar red" in head
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")] if colored else [])
    return np.frombuffer(body, dtype=dtype, count=n)


def test_train_writes_a_grid_and_a_ply_per_sample(run_dir):
    samples = run_dir / "samples"
    assert (samples / "samples.png").is_file()
    plys = sorted(samples.glob("sample-*.ply"))
    assert len(plys) == 8
    cloud = _read_ply(plys[0])
    assert len(cloud) == 64 and np.isfinite(cloud["x"]).all()


def test_sample_command(run_dir, tmp_path):
    result = runner.invoke(app, ["sample", str(run_dir), "--n", "3", "--steps", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("sample-*.ply"))) == 3


def test_sample_one_class_with_guidance(run_dir, tmp_path):
    """The default model is class-conditional (shapes: 8 classes, labels dropped for 10 % of the
    batch): --class picks one, --guidance contrasts it with the unconditional model."""
    from safetensors.torch import load_file

    weights = load_file(str(next((run_dir / "checkpoints").glob("step-*.safetensors"))))
    assert any(k.endswith("label.weight") and v.shape[0] == 9 for k, v in weights.items())
    result = runner.invoke(app, ["sample", str(run_dir), "--n", "2", "--steps", "2", "--class", "3",
                                 "--guidance", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("sample-*.ply"))) == 2
    bad = runner.invoke(app, ["sample", str(run_dir), "--n", "2", "--steps", "2", "--class", "8",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and len(bad.output.strip().splitlines()) == 1, bad.output


def test_inpaint_half_space_keeps_the_known_points(run_dir, tmp_path):
    from polydiff_points.shapes import make_shape

    full = make_shape("table", 0, "test", 64)
    np.savetxt(tmp_path / "table.xyz", full)
    out = tmp_path / "out"
    result = runner.invoke(app, ["sample", str(run_dir), "--inpaint", str(tmp_path / "table.xyz"),
                                 "--mask", "x>0", "--n", "2", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "inpaint.png").is_file()
    cloud = _read_ply(out / "inpaint-0000.ply")
    known = cloud["b"] > cloud["r"]  # known points are blue, generated ones orange
    assert 0 < known.sum() < 64
    # the known points are the input's x > 0 half, normalised as the training data were
    assert (cloud["x"][known] > 0).all() and (cloud["x"][~known] <= 0).any()


def test_inpaint_partial_cloud_with_given(run_dir, tmp_path):
    part = np.random.default_rng(0).uniform(-0.5, 0.5, (20, 3)).astype(np.float32)
    np.save(tmp_path / "part.npy", part)
    out = tmp_path / "out"
    result = runner.invoke(app, ["sample", str(run_dir), "--inpaint", str(tmp_path / "part.npy"),
                                 "--mask", "given", "--n", "1", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cloud = _read_ply(out / "inpaint-0000.ply")
    known = cloud["b"] > cloud["r"]
    assert known.sum() == 20
    got = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)[known]
    np.testing.assert_allclose(got, part, atol=1e-6)


def test_bad_mask_and_bad_input_are_one_line(run_dir, tmp_path):
    np.save(tmp_path / "full.npy", np.random.default_rng(0).normal(size=(64, 3)))
    for mask, needle in (("w>0", "neither a file nor a preset"), ("x>9", "keeps 0 of 64"),
                         ("given", "whole cloud")):
        result = runner.invoke(app, ["sample", str(run_dir), "--inpaint", str(tmp_path / "full.npy"),
                                     "--mask", mask, "--n", "1", "--steps", "1"])
        assert result.exit_code == 2, result.output
        assert needle in result.output and "Traceback" not in result.output
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\nend_header\n1 2")
    result = runner.invoke(app, ["sample", str(run_dir), "--inpaint", str(tmp_path / "bad.ply"),
                                 "--mask", "x>0", "--n", "1", "--steps", "1"])
    assert result.exit_code == 2 and "bad.ply" in result.output and "Traceback" not in result.output


def test_train_on_a_bad_folder_is_one_line(tmp_path):
    (tmp_path / "data" / "mugs").mkdir(parents=True)
    v = np.zeros((3, 3))
    v[1, 0] = np.nan
    (tmp_path / "data" / "mugs" / "m.off").write_text("OFF\n3 1 0\n" + "".join(
        " ".join(map(str, r)) + "\n" for r in v) + "3 0 1 2\n")
    result = runner.invoke(app, ["train", "--modality", "points", "--data", str(tmp_path / "data"),
                                 "--steps", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "m.off" in result.output and "NaN" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("key, value, words", [
    ("model", "num_classes = -3", ["model.num_classes", "-3"]),
    ("data", 'normalize = "unit"', ["data.normalize", "unit"]),
    ("model", "k = 0", ["model.k", "0"]),
])
def test_out_of_range_settings_are_one_line_before_any_run_folder(tmp_path, key, value, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[{key}]\n{value}\n")
    result = runner.invoke(app, ["train", "--modality", "points", "--config", str(cfg), "--steps", "1",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert all(w in result.output for w in words), result.output
    assert not (tmp_path / "run").exists()


def test_evaluate_states_the_normalisation(run_dir):
    result = runner.invoke(app, ["evaluate", str(run_dir), "--n", "8", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "1-NNA-CD" in result.output and "box" in result.output


def test_a_run_recorded_before_class_labels_still_samples(run_dir, tmp_path):
    """Runs trained before `model.num_classes` existed were unconditional: their record has every
    other model key; they build that network again and sample."""
    import shutil

    from polydiff_points import modality
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    record = json.loads((old / "config.json").read_text())
    del record["config"]["model"]["num_classes"]
    (old / "config.json").write_text(json.dumps(record))
    net = modality.build_network(record["config"])
    assert net.label is None
    for path in (old / "checkpoints").glob("*.safetensors"):
        weights = load_file(str(path))
        save_file({k: v for k, v in weights.items() if "label" not in k}, str(path))
    result = runner.invoke(app, ["sample", str(old), "--n", "2", "--steps", "2", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s").glob("sample-*.ply"))) == 2
