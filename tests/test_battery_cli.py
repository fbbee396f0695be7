"""The bad-input battery through the CLI with the in-memory toy modality: configuration files and
values, output folders, damaged run folders, sampling options and the output-folder policy.

Each refusal is checked by :func:`_battery.assert_refused`: exit code 2, one line on stderr that
names the file or option and the problem, no traceback, and every file under the test's folder
byte-identical before and after (nothing written, replaced or removed).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polydiff.battery import assert_refused, tree_state
from polydiff.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished toy run (3 steps), trained once; tests damage copies of it."""
    from toy_modality import ToyModality

    from polydiff.config import resolve
    from polydiff.train import train

    toy = ToyModality()
    run = tmp_path_factory.mktemp("trained") / "run"
    cfg = resolve(toy, overrides={"train": {"steps": 3, "plot_every": 0, "snapshot_every": 0}})
    train(toy, cfg, run, sample_at_end=False)
    return run


@pytest.fixture
def run(trained, tmp_path, toy_registry):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _weights(run: Path) -> Path:
    return run / "checkpoints" / json.loads((run / "checkpoints" / "latest.json").read_text())["weights"]


# -- 1, 2: configuration files and values, refused before any folder is made ---------------------

CONFIGS = [
    ("steps-word", '[train]\nsteps = "ten"\n', ["train.steps", '"ten"', "expected int"]),
    ("steps-negative", "[train]\nsteps = -3\n", ["train.steps", "-3", "≥ 1"]),
    ("batch-zero", "[train]\nbatch_size = 0\n", ["train.batch_size", "≥ 1"]),
    ("lr-nan", "[train]\nlr = nan\n", ["train.lr", "finite"]),
    ("lr-inf", "[train]\nlr = inf\n", ["train.lr", "finite"]),
    ("beta-one", "[train]\nbeta2 = 1.0\n", ["train.beta2", "[0, 1)"]),
    ("bool-for-int", "[train]\nsteps = true\n", ["train.steps", "boolean"]),
    ("choice", '[train]\noptimizer = "sgd"\n', ["train.optimizer", "sgd", "adamw"]),
    ("guidance-nan", "[sample]\nguidance = nan\n", ["sample.guidance", "finite"]),
    ("sampler-unknown", '[sample]\nsampler = "nope"\n', ["nope"]),
    ("plugin-key-type", '[data]\nsize = "big"\n', ["data.size", "big", "expected a number"]),
    ("section-not-table", "train = 3\n", ["[train]", "table"]),
    ("markup-section", "[\"a[/x]\"]\nk = 1\n", ["unknown section [a[/x]]", "valid sections: data"]),
    ("markup-key", '[train]\n"[bold]x" = 1\n', ["train.[bold]x"]),
    ("not-toml", "[train\nsteps = 3\n", ["not valid TOML"]),
    ("not-utf8", b"[train]\nsteps = 3 # \xff\xfe\n", ["not UTF-8"]),
]


def _toml_id(case) -> str:
    # the TOML itself names the case (docs/reliability.md lists these ids)
    return " ".join(case[1].split()) if isinstance(case[1], str) else f"{case[0]}: {case[1]!r}"


@pytest.mark.parametrize("text,needles", [c[1:] for c in CONFIGS], ids=[_toml_id(c) for c in CONFIGS])
def test_bad_config_is_one_line_before_any_folder(toy_registry, tmp_path, text, needles):
    cfg = tmp_path / "cfg.toml"
    (cfg.write_bytes if isinstance(text, bytes) else cfg.write_text)(text)
    out = tmp_path / "new-run"
    assert_refused(lambda: _run("train", "-m", "toy", "--config", cfg, "--out", out), tmp_path,
                   "cfg.toml", *needles)
    assert not out.exists()


def test_config_path_problems(toy_registry, tmp_path):
    assert_refused(lambda: _run("train", "-m", "toy", "--config", tmp_path / "none.toml"),
                   tmp_path, "none.toml", "not found")
    assert_refused(lambda: _run("train", "-m", "toy", "--config", tmp_path), tmp_path, "not found")


def test_markup_in_a_path_is_printed_as_written(toy_registry, tmp_path):
    out = tmp_path / "a[/x]" / "[bold]run"
    result = _run("train", "-m", "toy", "--out", out, "--steps", 2)
    assert result.exit_code == 0, result.output
    assert "[bold]run" in result.output.replace("\n", "")
    assert (out / "checkpoints" / "latest.json").is_file()
    missing = tmp_path / "b[/y]"
    assert_refused(lambda: _run("sample", missing), tmp_path, "b[/y]", "not a run folder")


# -- 3: unusable --out ------------------------------------------------------------------------------


def test_out_under_a_file_or_a_file(toy_registry, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert_refused(lambda: _run("train", "-m", "toy", "--out", tmp_path / "file.txt" / "run"),
                   tmp_path, "file.txt", "is a file")
    assert_refused(lambda: _run("train", "-m", "toy", "--out", tmp_path / "file.txt"),
                   tmp_path, "file.txt", "not a folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_a_read_only_folder(toy_registry, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_refused(lambda: _run("train", "-m", "toy", "--out", locked / "run"), tmp_path,
                       "locked", "permission denied")
    finally:
        locked.chmod(0o755)


def test_out_holding_other_files_or_orphan_checkpoints(toy_registry, tmp_path, trained):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert_refused(lambda: _run("train", "-m", "toy", "--out", mine), tmp_path, "notes.txt",
                   "not a run's")
    orphan = tmp_path / "orphan"
    shutil.copytree(trained, orphan)
    (orphan / "checkpoints" / "latest.json").unlink()
    assert_refused(lambda: _run("train", "-m", "toy", "--out", orphan), tmp_path,
                   "checkpoint files", "no latest.json")


def test_existing_run_is_refused_and_left_identical(run, tmp_path):
    assert_refused(lambda: _run("train", "-m", "toy", "--out", run), tmp_path, "--resume")


# -- 4: damaged run folders -------------------------------------------------------------------------


def _damage_record(text):
    return lambda run: (run / "config.json").write_text(text)


def _truncate(path_of, keep=0.5):
    def damage(run):
        path = path_of(run)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def _edit_config(section, key, value):
    def damage(run):
        record = json.loads((run / "config.json").read_text())
        record["config"][section][key] = value
        (run / "config.json").write_text(json.dumps(record))
    return damage


def _state(run):
    return _weights(run).with_name(_weights(run).name.replace(".safetensors", ".state.pt"))


DAMAGE = [
    ("record-garbage", _damage_record("{not json"), ["config.json", "damaged run record"]),
    ("record-list", _damage_record("[]"), ["config.json", "JSON object"]),
    ("record-no-modality", _damage_record('{"config": {}}'), ["config.json", "modality"]),
    ("record-binary", lambda r: (r / "config.json").write_bytes(b"\xff\xfe\x00"), ["config.json", "UTF-8"]),
    ("record-bad-value", _edit_config("sample", "steps", "ten"), ["config.json", "sample.steps"]),
    ("record-nan", _edit_config("sample", "guidance", float("nan")), ["config.json", "sample.guidance"]),
    ("pointer-garbage", lambda r: (r / "checkpoints" / "latest.json").write_text("{{"), ["latest.json", "damaged"]),
    ("pointer-escape", lambda r: (r / "checkpoints" / "latest.json").write_text('{"weights": "../config.json"}'),
     ["latest.json", "weights"]),
    ("pointer-missing-file", lambda r: _weights(r).unlink(), [".safetensors", "missing"]),
    ("weights-truncated", _truncate(_weights), [".safetensors", "damaged"]),
    ("weights-garbage", lambda r: _weights(r).write_bytes(os.urandom(64)), [".safetensors", "damaged"]),
    ("weights-empty", lambda r: _weights(r).write_bytes(b""), [".safetensors", "damaged"]),
    ("architecture", _edit_config("model", "width", 16), [".safetensors", "inp.weight", "(32, 4)", "(16, 4)"]),
]


@pytest.mark.parametrize("damage,needles", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_run_folder_is_one_line_for_sample_and_resume(run, tmp_path, damage, needles):
    damage(run)
    assert_refused(lambda: _run("sample", run, "--out", tmp_path / "s"), tmp_path, *needles)
    assert_refused(lambda: _run("train", "--resume", run), tmp_path, *needles)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.97])
def test_truncated_training_state_is_one_line_on_resume(run, tmp_path, keep):
    _truncate(_state, keep)(run)
    assert_refused(lambda: _run("train", "--resume", run, "--steps", 5), tmp_path, ".state.pt", "damaged")


# -- 6: sampling options ----------------------------------------------------------------------------

OPTIONS = [
    ("schedule", ["--schedule", "bogus"], ["--schedule bogus", "karras"]),
    ("guidance-nan", ["--guidance", "nan"], ["--guidance nan", "finite"]),
    ("guidance-inf", ["--guidance", "inf"], ["--guidance inf", "finite"]),
    ("guidance-negative", ["--guidance", "-1"], ["--guidance -1", ">= 0"]),
    ("steps-zero", ["--steps", "0"], ["--steps"]),
    ("steps-word", ["--steps", "ten"], ["--steps"]),
    ("n-zero", ["--n", "0"], ["--n"]),
    ("sampler", ["--sampler", "nope"], ["nope", "heun"]),
    ("checkpoint", ["--checkpoint", "oldest"], ["--checkpoint oldest"]),
    ("class", ["--class", "x"], ["--class"]),
    ("unknown-option", ["--bogus"], ["--bogus"]),
    ("seed-huge", ["--seed", str(2**70)], ["--seed"]),
    ("seed-negative", ["--seed", "-1"], ["--seed"]),
    ("n-huge", ["--n", "10000000"], ["--n"]),
    ("steps-huge", ["--steps", "1000000000"], ["--steps"]),
    ("device-emoji-code", ["--device", "cuda:x"], ["--device cuda:x"]),
]


@pytest.mark.parametrize("args,needles", [o[1:] for o in OPTIONS], ids=[" ".join(o[1]) for o in OPTIONS])
def test_bad_sampling_option_is_one_line(run, tmp_path, args, needles):
    assert_refused(lambda: _run("sample", run, *args, "--out", tmp_path / "s"), tmp_path, *needles)


def test_non_finite_samples_are_refused_before_writing(run, tmp_path, monkeypatch):
    """A sampler that diverges (too strong a guidance, say) writes no files of NaN."""
    import polydiff.generate

    real = polydiff.generate.generate

    def diverged(*args, **kwargs):
        from polydiff.state import tree_map

        x, layout, nfe = real(*args, **kwargs)
        return tree_map(lambda t: t * float("nan"), x), layout, nfe

    monkeypatch.setattr(polydiff.generate, "generate", diverged)
    out = tmp_path / "s"
    before = tree_state(tmp_path)
    result = _run("sample", run, "--steps", 2, "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    # the sampler's progress lines come first; the error is the one line after them
    last = result.stderr.strip().splitlines()[-1]
    assert "non-finite" in last and "nothing was written" in last and "--steps" in last, last
    assert tree_state(tmp_path) == before and not out.exists()


def test_sample_out_that_is_a_file_fails_before_sampling(run, tmp_path):
    (tmp_path / "taken.png").write_bytes(b"png")
    assert_refused(lambda: _run("sample", run, "--out", tmp_path / "taken.png"), tmp_path,
                   "taken.png", "not a folder")
    assert_refused(lambda: _run("sample", run, "--out", tmp_path / "taken.png" / "x"), tmp_path,
                   "taken.png", "is a file")


# -- 8: earlier outputs are never mixed with or replaced by new ones ---------------------------------


def test_default_output_folder_gets_a_fresh_name(run):
    first = _run("sample", run, "--steps", 2)
    assert first.exit_code == 0, first.output
    folder = run / "samples" / "euler-2"
    kept = tree_state(folder)
    second = _run("sample", run, "--steps", 2, "--seed", 5)
    assert second.exit_code == 0, second.output
    assert "euler-2-2" in second.output and "already held" in second.output
    assert tree_state(folder) == kept  # the first outputs untouched
    assert (run / "samples" / "euler-2-2" / "samples.pt").is_file()


def test_explicit_out_holding_files_is_refused_then_overwritten(run, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "old.txt").write_text("earlier output")
    assert_refused(lambda: _run("sample", run, "--out", out), tmp_path, str(out), "--overwrite")
    result = _run("sample", run, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["samples.pt"]


def test_overwrite_never_empties_a_run_folder(run, tmp_path):
    assert_refused(lambda: _run("sample", run, "--out", run, "--overwrite"), tmp_path,
                   "training run", "never empties")


def test_fresh_file_numbers_a_taken_name(tmp_path):
    from polydiff.cli.outputs import fresh_file

    path = tmp_path / "heun-18.json"
    assert fresh_file(path) == path
    path.write_text("{}")
    assert fresh_file(path) == tmp_path / "heun-18-2.json"
    (tmp_path / "heun-18-2.json").write_text("{}")
    assert fresh_file(path) == tmp_path / "heun-18-3.json"
    assert fresh_file(path, overwrite=True) == path


def test_a_plugins_own_declarations_are_enforced(tmp_path):
    from toy_modality import ToyModality

    from polydiff.config import resolve
    from polydiff.config_schema import Setting
    from polydiff.errors import UserError

    class Declared(ToyModality):
        config_schema = {"data": {"size": Setting("int", "items in the set", minimum=8)}}

    cfg = tmp_path / "plugin.toml"
    cfg.write_text("[data]\nsize = 4\n")
    with pytest.raises(UserError, match=r"plugin.toml: data.size = 4: expected ≥ 8, got 4"):
        resolve(Declared(), cfg)
    cfg.write_text("[data]\nsize = 16\n")
    assert resolve(Declared(), cfg)["data"]["size"] == 16
    # undeclared plugin keys keep the kind of their default; the word "auto" may stand for a number
    cfg.write_text('[model]\nwidth = "auto"\n')
    assert resolve(ToyModality(), cfg)["model"]["width"] == "auto"
    cfg.write_text("[model]\nwidth = [1]\n")
    with pytest.raises(UserError, match="model.width = \\[1\\]: expected a number, got list"):
        resolve(ToyModality(), cfg)
    cfg.write_text("[model]\nwidth = 2.5\n")  # an int default does not refuse a float
    assert resolve(ToyModality(), cfg)["model"]["width"] == 2.5
