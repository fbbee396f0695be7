"""The pieces of polydiff.training on their own: wall-clock checkpoints, periodic actions, the
counters record and its reading of older training states."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from toy_modality import ToyModality
from typer.testing import CliRunner

import polydiff.training.loop as loop
from polydiff.checkpoint import STATE_SUFFIX
from polydiff.cli import app
from polydiff.config import resolve
from polydiff.errors import UserError
from polydiff.train import Trainer, latest_checkpoint, read_metrics, train
from polydiff.training.actions import PeriodicAction, run_due
from polydiff.training.counters import Counters


def config(toy, **train_keys):
    quiet = {"checkpoint_every": 0, "plot_every": 0, "snapshot_every": 0, "log_every": 1, "threads": 1}
    return resolve(toy, overrides={"train": {**quiet, **train_keys}})


def saved_steps(run):
    return sorted(int(p.name[5:12]) for p in (run / "checkpoints").glob("step-*.safetensors"))


def fake_clock(monkeypatch, seconds_per_call):
    ticks = itertools.count()
    monkeypatch.setattr(loop, "clock", lambda: seconds_per_call * next(ticks))


def test_wall_clock_checkpoint_fires_without_waiting(tmp_path, monkeypatch):
    toy = ToyModality()
    # every step takes 40 s: 80 s after step 2 is past the minute, so step 3 saves; then step 6,
    # the last, which the end of the run saves anyway
    fake_clock(monkeypatch, 40.0)
    train(toy, config(toy, steps=6, checkpoint_minutes=1, keep_last=10), tmp_path / "on",
          sample_at_end=False)
    assert saved_steps(tmp_path / "on") == [3, 6]
    fake_clock(monkeypatch, 40.0)
    train(toy, config(toy, steps=6, checkpoint_minutes=0, keep_last=10), tmp_path / "off",
          sample_at_end=False)
    assert saved_steps(tmp_path / "off") == [6]
    # a step checkpoint resets the clock too: 80 s apart, they keep a 90 s clock from coming due
    fake_clock(monkeypatch, 40.0)
    train(toy, config(toy, steps=7, checkpoint_every=2, checkpoint_minutes=1.5, keep_last=10),
          tmp_path / "both", sample_at_end=False)
    assert saved_steps(tmp_path / "both") == [2, 4, 6, 7]
    rows = read_metrics(tmp_path / "on" / "metrics.jsonl")
    assert [r["time"] for r in rows] == [40.0 * s for s in range(1, 7)]


def test_wall_clock_checkpoints_do_not_push_out_step_checkpoints(tmp_path, monkeypatch):
    """keep_last counts the checkpoint_every checkpoints; the newest (wall-clock or end-of-run)
    and the best are kept besides. Saved here without pruning: 3, 5, 8 (clock), 10, 13 (end)."""
    toy = ToyModality()
    fake_clock(monkeypatch, 40.0)
    train(toy, config(toy, steps=13, checkpoint_every=5, checkpoint_minutes=1, keep_last=2),
          tmp_path / "run", sample_at_end=False)
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())["step"]
    assert set(saved_steps(tmp_path / "run")) == {5, 10, 13, best}


def test_wall_clock_checkpoint_resumes_exactly(tmp_path, monkeypatch):
    toy = ToyModality()
    fake_clock(monkeypatch, 40.0)
    full = train(toy, config(toy, steps=8), tmp_path / "full", sample_at_end=False)
    fake_clock(monkeypatch, 40.0)
    train(toy, config(toy, steps=4, checkpoint_minutes=1), tmp_path / "part", sample_at_end=False)
    fake_clock(monkeypatch, 40.0)
    part = train(toy, config(toy, steps=8, checkpoint_minutes=1), tmp_path / "part", resume=True,
                 sample_at_end=False)
    losses = [[r["loss"] for r in read_metrics(p / "metrics.jsonl")] for p in (full.run_dir, part.run_dir)]
    assert losses[0] == losses[1] and len(losses[0]) == 8
    # the training time carries over the resume, and so does the clock of the checkpoints
    assert read_metrics(part.run_dir / "metrics.jsonl")[-1]["time"] == 8 * 40.0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True])
def test_checkpoint_minutes_must_be_a_finite_number(tmp_path, bad):
    toy = ToyModality()
    with pytest.raises(UserError, match="checkpoint_minutes") as info:
        Trainer(toy, config(toy, checkpoint_minutes=bad), tmp_path)
    assert "\n" not in str(info.value)


def test_cli_refuses_negative_checkpoint_minutes(toy_registry, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\ncheckpoint_minutes = -2\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-m", "toy", "--out", str(out), "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checkpoint_minutes" in errors[0]
    assert not (out / "checkpoints").exists()


def test_periodic_action_schedule():
    seen = []
    actions = [
        PeriodicAction("a", 2, lambda: seen.append("a")),
        PeriodicAction("b", 0, lambda: seen.append("b")),
        PeriodicAction("c", 3, lambda: seen.append("c"), at_last=False),
        PeriodicAction("d", 4, lambda: seen.append("d"), at_last=True),
        PeriodicAction("e", lambda step: step == 5, lambda: seen.append("e")),
    ]
    due = {step: run_due(actions, step, 6) for step in range(1, 7)}
    assert due == {1: [], 2: ["a"], 3: ["c"], 4: ["a", "d"], 5: ["e"], 6: ["a", "d"]}
    assert seen == [n for names in due.values() for n in names]


def test_a_new_periodic_action_is_one_line(tmp_path):
    toy = ToyModality()
    seen = []

    class Counting(Trainer):
        def periodic_actions(self, bar):
            count = PeriodicAction("count", 2, lambda: seen.append(self.step))
            return [*super().periodic_actions(bar), count]

    t = Counting(toy, config(toy, steps=5), tmp_path)
    t.run_dir.mkdir(exist_ok=True)
    t.fit()
    assert seen == [2, 4]


def test_counters_are_one_record_in_the_state(tmp_path):
    toy = ToyModality()
    run = tmp_path / "run"
    train(toy, config(toy, steps=3), run, sample_at_end=False)
    path = latest_checkpoint(run)
    state = torch.load(path.with_name(path.name.replace(".safetensors", STATE_SUFFIX)),
                       weights_only=True)
    c = Counters(**state["counters"])
    assert state["step"] == c.step == c.saved_step == c.batches_seen == 3
    assert c.best_step == 3 and math.isfinite(c.best_loss) and c.window_count == 0


def _legacy(state: dict, per_epoch: int) -> dict:
    """The training state as written before the counters were one record."""
    old = dict(state)
    c = old.pop("counters")
    for key in ("batches_seen", "skipped", "nonfinite_streak", "smooth_num", "smooth_den",
                "best_loss", "best_step", "window_sum", "window_count", "last_loss", "elapsed"):
        old[key] = c[key]
    old["epoch"], old["offset"] = divmod(c["batches_seen"], per_epoch)
    return old


def test_checkpoint_with_loose_counters_still_resumes_exactly(tmp_path):
    toy = ToyModality()
    cfg = config(toy, steps=10, checkpoint_every=3, log_every=2)
    train(toy, cfg, tmp_path / "full", sample_at_end=False)
    stop = config(toy, steps=6, checkpoint_every=4, log_every=2)
    train(toy, stop, tmp_path / "part", sample_at_end=False)
    path = latest_checkpoint(tmp_path / "part")
    state_path = path.with_name(path.name.replace(".safetensors", STATE_SUFFIX))
    per_epoch = len(toy.build_dataset("sets", cfg, "train")) // int(cfg["train"]["batch_size"])
    torch.save(_legacy(torch.load(state_path, weights_only=True), per_epoch), state_path)
    train(toy, cfg, tmp_path / "part", resume=True, sample_at_end=False)
    full = read_metrics(tmp_path / "full" / "metrics.jsonl")
    part = read_metrics(tmp_path / "part" / "metrics.jsonl")
    assert [(r["step"], r["loss"], r["smoothed_loss"]) for r in part] == [
        (r["step"], r["loss"], r["smoothed_loss"]) for r in full
    ]


def test_oldest_states_give_the_data_position_as_epoch_and_offset():
    c = Counters.from_state({"step": 7, "epoch": 2, "offset": 1, "skipped": 1}, per_epoch=3)
    assert (c.step, c.batches_seen, c.skipped, c.saved_step) == (7, 7, 1, 7)
    assert c.best_loss == math.inf and math.isnan(c.last_loss)
