"""SIGKILL a training process anywhere — mid-step, inside each file of a checkpoint write, just
after a checkpoint committed — resume each time, and end exactly where an uninterrupted run ends.

The processes are forked children of the test process running the real CLI (see
``test_train_launcher.Forked``): separate processes, killed for real, without paying an
interpreter start each.
"""

from __future__ import annotations

import json
import random
import time

from test_train_launcher import Forked
from toy_modality import ToyModality

from polydiff.checkpoint import load_all_weights, load_state
from polydiff.config import resolve
from polydiff.train import latest_checkpoint, read_metrics, train

STEPS = 24
TRAIN = {
    "checkpoint_every": 4,
    "log_every": 1,
    "keep_last": 2,
    "plot_every": 0,
    "snapshot_every": 0,
    "threads": 1,
    "ema_decays": [0.9, 0.99],
}


def saved_step(run):
    """The committed checkpoint's step (None before the first), after checking it loads."""
    path = latest_checkpoint(run)
    if path is None:
        return None
    groups, meta = load_all_weights(path)
    state = load_state(path.parent, path.name[: -len(".safetensors")])
    assert state["step"] == meta["step"] and {"model", "ema", "ema1"} <= set(groups)
    return meta["step"]


def test_sigkill_anywhere_and_resume_loses_nothing(tmp_path, toy_registry):
    toy = ToyModality()
    reference = tmp_path / "reference"
    train(toy, resolve(toy, overrides={"train": {**TRAIN, "steps": STEPS}}), reference,
          sample_at_end=False)

    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in TRAIN.items()))
    run = tmp_path / "run"
    base = ["train", "-m", "toy", "--out", run, "--steps", STEPS, "--config", cfg]
    rng = random.Random(0)
    # (what to wait for, extra seconds before the kill, slow checkpoint writes?)
    plans = [
        (f"@step {rng.randint(2, 6)}", 0.0, False),  # mid-step, maybe before any checkpoint
        ("@writing step-", 0.0, True),  # inside the state file write
        ("@writing step-0000012.safetensors", 0.0, True),  # inside the weights write
        ("@writing latest.json", 0.0, True),  # inside the commit itself
        ("@writing latest.json", 0.15, True),  # just after the commit (pruning, best link)
        (f"@step {rng.randint(17, 21)}", rng.uniform(0.0, 0.02), False),  # anywhere later
    ]
    kills = []
    for marker, delay, slow_writes in plans:
        before = saved_step(run)
        args = base + ["--resume", run] if before is not None else base
        child = Forked(args, step_delay=0.005, write_delay=0.1 if slow_writes else 0.0)
        first = child.wait_for("@step")
        # a resumed run starts right after the last committed step: nothing is lost or redone
        assert first == f"@step {(before or 0) + 1}", (first, before)
        child.wait_for(marker)
        if delay:
            time.sleep(delay)
        child.kill()
        assert child.returncode == -9
        kills.append((marker, before, saved_step(run)))

    child = Forked(base + ["--resume", run], step_delay=0.0)
    assert child.wait() == 0, "\n".join(child.output[-20:])
    assert saved_step(run) == STEPS
    # the interrupted writes did not commit; the finished one did
    assert [k[2] for k in kills[2:5]] == [8, 8, 12], kills

    rows = read_metrics(run / "metrics.jsonl")
    expected = read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in rows] == [r["loss"] for r in expected]  # bit for bit
    final, ref = load_all_weights(latest_checkpoint(run))[0], load_all_weights(latest_checkpoint(reference))[0]
    for group in ref:
        for name, value in ref[group].items():
            assert value.equal(final[group][name]), (group, name)
    ckpt = run / "checkpoints"
    assert not list(ckpt.glob(".*.tmp")) and not list(run.glob(".*.tmp"))
    stems = {p.name.split(".")[0] for p in ckpt.glob("step-*.safetensors")}
    best = json.loads((ckpt / "best.json").read_text())["weights"].split(".")[0]
    assert stems <= {"step-0000020", "step-0000024", best}
