"""The training loop on the toy modality: reproducibility, exact resume, schedules, EMAs,
checkpoint retention, non-finite guards and what the CLI prints."""

from __future__ import annotations

import json
import math
import re
import signal

import pytest
import torch
from toy_modality import ToyModality
from typer.testing import CliRunner

from polydiff.checkpoint import load_all_weights, load_state
from polydiff.cli import app
from polydiff.config import resolve
from polydiff.errors import UserError
from polydiff.protocol import CONTRACT_VERSION
from polydiff.train import (
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
    latest_checkpoint,
    read_metrics,
    train,
)


def config(toy, **train_keys):
    # one thread: tiny models on a busy machine are many times faster without OpenMP waits
    quiet = {"checkpoint_every": 0, "plot_every": 0, "snapshot_every": 0, "log_every": 1, "threads": 1}
    return resolve(toy, overrides={"train": {**quiet, **train_keys}})


def losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "event" not in r]


def weights(run_dir):
    return load_all_weights(latest_checkpoint(run_dir))[0]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for group in a:
        for name in a[group]:
            assert torch.equal(a[group][name], b[group][name]), (group, name)


class NaNToy(ToyModality):
    """The toy with a NaN planted in the batches of the given collate calls (1-based)."""

    def __init__(self, bad=(), bad_from=None):
        self.bad, self.bad_from, self.calls = set(bad), bad_from, 0

    def collate(self, items):
        batch = super().collate(items)
        self.calls += 1
        if self.calls in self.bad or (self.bad_from is not None and self.calls >= self.bad_from):
            batch.x["pos"][0, 0, 0] = float("nan")
        return batch


def test_same_seed_same_curve_snapshots_change_nothing(tmp_path):
    toy = ToyModality()
    train(toy, config(toy, steps=6), tmp_path / "a", sample_at_end=False)
    # snapshots and plots in between draw samples: the training RNG must not notice
    train(toy, config(toy, steps=6, snapshot_every=2, snapshot_n=3, plot_every=3), tmp_path / "b",
          sample_at_end=False)
    train(toy, config(toy, steps=6, seed=1), tmp_path / "c", sample_at_end=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert (tmp_path / "b" / "samples" / "step-0000002" / "samples.pt").exists()
    assert (tmp_path / "b" / "samples" / "step-0000004" / "samples.pt").exists()
    assert (tmp_path / "b" / "loss.png").exists()


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_after_stop_reproduces_uninterrupted_run_bit_for_bit(tmp_path, monkeypatch, grad_accum):
    toy = ToyModality()
    cfg = config(toy, steps=12, checkpoint_every=5, log_every=2, grad_accum=grad_accum,
                 ema_decays=[0.9, 0.99], lr_schedule="cosine", warmup_steps=3)
    train(toy, cfg, tmp_path / "full", sample_at_end=False)

    step = Trainer.train_step

    def ctrl_c_at_step_7(self, micro):  # what the SIGINT handler does
        if self.step == 6:
            self._signal = signal.SIGINT
        return step(self, micro)

    monkeypatch.setattr(Trainer, "train_step", ctrl_c_at_step_7)
    with pytest.raises(TrainingInterrupted) as info:
        train(toy, cfg, tmp_path / "part", sample_at_end=False)
    assert info.value.step == 7 and "--resume" in str(info.value)
    assert json.loads((tmp_path / "part/checkpoints/latest.json").read_text())["step"] == 7
    monkeypatch.setattr(Trainer, "train_step", step)
    result = train(toy, cfg, tmp_path / "part", resume=True, sample_at_end=False)

    assert result.steps == 12
    full = read_metrics(tmp_path / "full" / "metrics.jsonl")
    part = read_metrics(tmp_path / "part" / "metrics.jsonl")
    assert [r["step"] for r in part] == [r["step"] for r in full] == [2, 4, 6, 8, 10, 12]
    assert [r["loss"] for r in part] == [r["loss"] for r in full]  # bit for bit
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))


def test_lr_warmup_and_schedules(tmp_path):
    toy = ToyModality()
    t = Trainer(toy, config(toy, steps=20, lr=1e-3, warmup_steps=4, lr_schedule="cosine",
                            lr_min=1e-5), tmp_path)
    lrs = [t.lr_at(s) for s in range(20)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert 1e-5 < lrs[-1] < 3e-5 and t.lr_at(20) == pytest.approx(1e-5)
    c = Trainer(toy, config(toy, steps=20, lr=1e-3, warmup_steps=0), tmp_path)
    assert {c.lr_at(s) for s in range(20)} == {1e-3}
    with pytest.raises(UserError, match="lr_schedule"):
        Trainer(toy, config(toy, lr_schedule="linear"), tmp_path)
    with pytest.raises(UserError, match="divisible"):
        Trainer(toy, config(toy, batch_size=8, grad_accum=3), tmp_path)


def deterministic_loss(denoiser, x0, mask=None, cond=None, **_):
    """A DSM-like loss whose noise and levels are functions of the data (no RNG)."""
    sigma = 0.1 + x0["pos"].abs().sum((1, 2))
    noise = {"pos": torch.sin(37 * x0["pos"] + 1), "val": torch.cos(11 * x0["val"])}
    x = {k: x0[k] + sigma.view(-1, *[1] * (x0[k].ndim - 1)) * noise[k] for k in x0}
    d = denoiser(x, sigma)
    m = mask["pos"]
    return ((d["pos"] - x0["pos"]) ** 2 * m[..., None]).sum((1, 2)) + (
        (d["val"] - x0["val"]) ** 2 * m
    ).sum(1)


def test_grad_accum_matches_one_big_batch(tmp_path):
    toy = ToyModality()
    params = []
    for accum in (1, 2, 4):
        t = Trainer(toy, config(toy, steps=3, grad_accum=accum), tmp_path / str(accum))
        t.run_dir.mkdir()
        t.loss_fn = deterministic_loss
        t.fit()
        params.append([p.detach().clone() for p in t.denoiser.parameters()])
    for other in params[1:]:
        for a, b in zip(params[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_several_emas_and_plain_ema_decay(tmp_path):
    toy = ToyModality()
    train(toy, config(toy, steps=4, ema_decays=[0.0, 0.2]), tmp_path / "two", sample_at_end=False)
    groups, meta = load_all_weights(latest_checkpoint(tmp_path / "two"))
    assert set(groups) == {"model", "ema", "ema1"} and meta["ema_decays"] == [0.0, 0.2]
    # decay 0 follows the weights; 0.2 (reached after warm-up) lags behind them
    assert all(torch.equal(groups["ema"][k], groups["model"][k]) for k in groups["ema"])
    assert any(not torch.equal(groups["ema"][k], groups["ema1"][k]) for k in groups["ema"])
    train(toy, config(toy, steps=2, ema_decay=0.7), tmp_path / "one", sample_at_end=False)
    groups, meta = load_all_weights(latest_checkpoint(tmp_path / "one"))
    assert set(groups) == {"model", "ema"} and meta["ema_decays"] == [0.7]


def test_keep_last_plus_best(tmp_path):
    toy = ToyModality()
    run = tmp_path / "run"
    train(toy, config(toy, steps=10, checkpoint_every=2, keep_last=2), run, sample_at_end=False)
    ckpt = run / "checkpoints"
    best = json.loads((ckpt / "best.json").read_text())
    stems = {p.name.split(".")[0] for p in ckpt.glob("step-*.safetensors")}
    assert {"step-0000008", "step-0000010"} <= stems
    assert stems <= {"step-0000008", "step-0000010", f"step-{best['step']:07d}"}
    assert (ckpt / "best.safetensors").read_bytes() == (ckpt / best["weights"]).read_bytes()
    assert {p.name.split(".")[0] for p in ckpt.glob("step-*.state.pt")} == stems
    assert not list(ckpt.glob(".*.tmp"))
    rows = [r for r in read_metrics(run / "metrics.jsonl")]
    assert best["smoothed_loss"] <= min(r["smoothed_loss"] for r in rows if r["step"] % 2 == 0)


def test_nan_batch_is_skipped_and_counted(tmp_path):
    toy = NaNToy(bad={3})
    result = train(toy, config(toy, steps=6), tmp_path / "run", sample_at_end=False)
    assert result.steps == 6 and result.skipped == 1
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    events = [r for r in rows if r.get("event") == "nonfinite"]
    assert [(e["at_step"], e["skipped"]) for e in events] == [(3, 1)]
    assert [r["step"] for r in rows if "event" not in r] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for v in losses(tmp_path / "run"))
    assert rows[-1]["skipped"] == 1
    for group in weights(tmp_path / "run").values():
        assert all(torch.isfinite(v).all() for v in group.values())


def test_nonfinite_in_a_row_stops_with_last_checkpoint_intact(tmp_path):
    toy = NaNToy(bad_from=5)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        train(toy, config(toy, steps=20, checkpoint_every=2, max_nonfinite=3), run,
              sample_at_end=False)
    message = str(info.value)
    assert "\n" not in message and "3 non-finite" in message and "step-0000004" in message
    path = latest_checkpoint(run)
    assert path.name == "step-0000004.safetensors"
    groups, meta = load_all_weights(path)
    assert meta["step"] == 4 and load_state(path.parent, "step-0000004")["step"] == 4
    assert all(torch.isfinite(v).all() for g in groups.values() for v in g.values())


def test_cli_nonfinite_exits_1_in_one_line(toy_registry, tmp_path, monkeypatch):
    collate = ToyModality.collate

    def poisoned(self, items):
        batch = collate(self, items)
        batch.x["val"][:] = float("inf")
        return batch

    monkeypatch.setattr(ToyModality, "collate", poisoned)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\nmax_nonfinite = 2\n")
    result = CliRunner().invoke(app, ["train", "-m", "toy", "--out", str(tmp_path / "run"),
                                      "--config", str(cfg)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 non-finite losses in a row" in errors[0]


def test_incompatible_plugin_or_contract_version_is_one_line_error(tmp_path, toy_registry):
    toy = toy_registry.load("toy")
    run = tmp_path / "run"
    train(toy, config(toy, steps=2), run, sample_at_end=False)
    toy_registry.register(toy, distribution="toy-tests", version="0.9")  # same major: fine
    train(toy, config(toy, steps=3), run, resume=True, sample_at_end=False)
    toy_registry.register(toy, distribution="toy-tests", version="1.0")
    with pytest.raises(UserError) as info:
        train(toy, config(toy, steps=4), run, resume=True, sample_at_end=False)
    assert "\n" not in str(info.value) and "toy-tests 0" in str(info.value) and "1.0" in str(info.value)

    class NextContract(ToyModality):
        protocol_version = "3.0"  # a major this polydiff cannot load

    with pytest.raises(UserError, match=rf"contract version {re.escape(CONTRACT_VERSION)}.*declares 3\.0"):
        train(NextContract(), config(toy, steps=4), run, resume=True, sample_at_end=False)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    toy = ToyModality()
    t = Trainer(toy, config(toy, steps=3, precision="bf16"), tmp_path)
    assert t.amp_dtype is torch.bfloat16
    t.run_dir.mkdir(exist_ok=True)
    t.fit()
    assert t.step == 3 and math.isfinite(t.last_loss)
    assert Trainer(toy, config(toy, precision="auto", device="cpu"), tmp_path).amp_dtype is None
    with pytest.raises(UserError, match="precision"):
        Trainer(toy, config(toy, precision="fp8"), tmp_path)


def test_cli_summary_names_everything(toy_registry, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\nsnapshot_every = 2\nsnapshot_n = 2\nplot_every = 2\ncheckpoint_every = 2\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-m", "toy", "--out", str(out), "--steps", "4",
                                      "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    for label in ("steps", "wall time", "steps/s", "final loss", "best", "metrics", "loss curve",
                  "snapshots", "samples", "checkpoint"):
        assert label in result.stdout, (label, result.stdout)
    assert (out / "loss.png").exists() and (out / "samples" / "step-0000002" / "samples.pt").exists()


def test_compile_without_a_working_compiler_trains_eagerly(tmp_path, monkeypatch):
    """A machine where inductor cannot compile (no C++ compiler) trains at eager speed: the run
    goes on, bit for bit the run without compile."""
    import torch._inductor.compile_fx

    calls = []

    def no_compiler(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no C++ compiler on this machine")

    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", no_compiler)
    toy = ToyModality()
    train(toy, config(toy, steps=4, compile=False), tmp_path / "eager", sample_at_end=False)
    train(toy, config(toy, steps=4, compile=True), tmp_path / "compiled", sample_at_end=False)
    assert calls  # compilation was attempted, and failed
    assert not torch._dynamo.config.suppress_errors  # the fallback is the run's, not the process's
    assert losses(tmp_path / "compiled") == losses(tmp_path / "eager")
    assert_same_weights(weights(tmp_path / "eager"), weights(tmp_path / "compiled"))


def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path, monkeypatch):
    """``train.compile`` on a machine that can compile: inductor really builds the step (counted),
    the losses follow the eager run's to float32 rounding, and the checkpoint holds the plain
    module's weights, which load into an uncompiled denoiser for sampling."""
    import shutil

    import torch._inductor.compile_fx

    from polydiff.generate import build_denoiser

    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler: inductor cannot compile here (the fallback test covers this)")
    real, calls = torch._inductor.compile_fx.compile_fx, []

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)  # counted once inductor returned a compiled graph
        return out

    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", counted)
    torch._dynamo.reset()
    toy = ToyModality()
    train(toy, config(toy, steps=3, compile=False), tmp_path / "eager", sample_at_end=False)
    train(toy, config(toy, steps=3, compile=True), tmp_path / "compiled", sample_at_end=False)
    torch._dynamo.reset()
    assert calls, "inductor compiled nothing"
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4, abs=1e-5)
    compiled, eager = weights(tmp_path / "compiled"), weights(tmp_path / "eager")
    assert compiled.keys() == eager.keys()
    for group in compiled:
        assert compiled[group].keys() == eager[group].keys()  # no "_orig_mod." prefixes
        for k, v in compiled[group].items():
            # Adam's normalised step turns rounding-level gradient differences on near-zero
            # gradients into up to 2 lr a step: a bound of the steps taken, not of the rounding
            torch.testing.assert_close(v, eager[group][k], rtol=0, atol=2 * 3 * 1e-3 + 1e-5)
    denoiser = build_denoiser(toy, config(toy))
    denoiser.load_state_dict(compiled["ema"] if "ema" in compiled else next(iter(compiled.values())))
