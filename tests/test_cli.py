"""The CLI through Typer's runner (toy modality in memory) and once through a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

from _cliassert import assert_one_line_error
from typer.testing import CliRunner

from polydiff.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])




def test_help_and_version():
    result = _run("--help")
    assert result.exit_code == 0
    for command in ("train", "sample", "samplers", "modalities"):
        assert command in result.output
    result = _run("--version")
    assert result.exit_code == 0 and result.output.startswith("polydiff ")


def test_modalities_lists_in_memory_plugin(toy_registry):
    result = _run("modalities")
    assert result.exit_code == 0, result.output
    assert "toy" in result.output and "toy-tests" in result.output and "ok" in result.output


def test_samplers_lists_names():
    result = _run("samplers")
    assert result.exit_code == 0
    for name in ("euler", "heun", "euler_maruyama"):
        assert name in result.output


def test_unknown_modality_names_available(toy_registry):
    assert_one_line_error(_run("train", "--modality", "nope"), "nope", "toy")


def test_missing_data_path(toy_registry, tmp_path):
    missing = tmp_path / "nothing-here"
    assert_one_line_error(_run("train", "-m", "toy", "--data", missing), str(missing))


def test_bad_config_key(toy_registry, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\nstepz = 3\n")
    assert_one_line_error(_run("train", "-m", "toy", "--config", cfg), "cfg.toml", "train.stepz", "steps")


def test_bad_cond_dropout_is_refused_before_anything_is_written(toy_registry, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\ncond_dropout = 1.5\n")
    out = tmp_path / "run"
    assert_one_line_error(
        _run("train", "-m", "toy", "--config", cfg, "--out", out), "cfg.toml", "train.cond_dropout", "[0, 1)"
    )
    assert not out.exists()


def test_bad_config_syntax(toy_registry, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[train\nsteps = 3\n")
    assert_one_line_error(_run("train", "-m", "toy", "--config", cfg), "broken.toml", "TOML")


def test_train_sample_and_no_overwrite(toy_registry, tmp_path):
    out = tmp_path / "run"
    result = _run("train", "-m", "toy", "--out", out, "--steps", 3, "--seed", 1)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["modality"] == "toy" and record["config"]["train"]["steps"] == 3
    pointer = json.loads((out / "checkpoints" / "latest.json").read_text())
    weights = out / "checkpoints" / pointer["weights"]
    before = weights.read_bytes()

    result = _run("sample", out, "--n", 3, "--sampler", "heun", "--steps", 2, "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "samples.pt").exists()
    assert "3 network evaluations" in result.output  # heun: 2 steps = 3 calls

    # a second run into the same folder is refused and leaves the checkpoint as it was
    assert_one_line_error(_run("train", "-m", "toy", "--out", out), str(out), "--resume")
    assert weights.read_bytes() == before

    # unknown sampler: one line naming the choices
    assert_one_line_error(_run("sample", out, "--sampler", "nope"), "nope", "heun")


def test_sample_from_non_run(tmp_path):
    assert_one_line_error(_run("sample", tmp_path), str(tmp_path), "config.json")


def test_real_subprocess_help_imports_no_torch():
    code = (
        "import sys\n"
        "sys.argv = ['polydiff', '--help']\n"
        "from polydiff.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None)\n"
        "assert 'torch' not in sys.modules, 'polydiff --help imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_real_subprocess_console_script(tmp_path):
    env = dict(os.environ, POLYDIFF_DISABLE_PLUGIN_AUTOLOAD="1")
    exe = Path(sys.executable).parent / "polydiff"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "polydiff"]
    proc = subprocess.run(cmd + ["train", "-m", "images"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "images" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cmd + ["modalities"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0
