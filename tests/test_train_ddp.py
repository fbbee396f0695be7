"""Data-parallel training with torch.distributed (gloo, two CPU processes).

Workers are forked from the test process (torch already imported, so they start at once); they
join a real process group over TCP exactly as torchrun's workers do (``env://`` variables).
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from test_train_launcher import Forked
from test_train_loop import deterministic_loss
from toy_modality import ToyModality

from polydiff import distributed
from polydiff.config import resolve
from polydiff.train import EpochBatches, Trainer, read_metrics

WORLD = 2
STEPS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendezvous(rank: int, port: int) -> dict[str, str]:
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(WORLD),
    }


def config(toy, **train_keys):
    keys = {"batch_size": 8, "steps": STEPS, "checkpoint_every": 0, "plot_every": 0,
            "snapshot_every": 0, "log_every": 1, "threads": 1, "device": "cpu", **train_keys}
    return resolve(toy, overrides={"train": keys})


def run_steps(trainer: Trainer) -> dict:
    """STEPS optimizer steps by hand, keeping each step's loss and (clipped, averaged) grads."""
    trainer.loss_fn = deterministic_loss
    data = trainer._micro_batches()
    out = {"losses": [], "grads": []}
    for _ in range(STEPS):
        micro = [next(data) for _ in range(trainer.grad_accum)]
        trainer.batches_seen += 1
        out["losses"].append(trainer.train_step(micro))
        out["grads"].append([p.grad.detach().clone() for p in trainer.denoiser.parameters()])
    out["params"] = [p.detach().clone() for p in trainer.denoiser.parameters()]
    out["ema"] = [p.detach().clone() for p in trainer.ema.parameters()]
    return out


def _worker(rank: int, port: int, out_dir: str, grad_accum: int) -> None:
    os.environ.update(rendezvous(rank, port))
    torch.set_num_threads(1)
    info = distributed.setup("cpu")
    assert (info.rank, info.world_size) == (rank, WORLD)
    try:
        toy = ToyModality()
        trainer = Trainer(toy, config(toy, grad_accum=grad_accum), out_dir)
        assert trainer.ddp is not None and trainer.micro_batch == 8 // (WORLD * grad_accum)
        torch.save(run_steps(trainer), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        distributed.cleanup()


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_two_process_gloo_gradients_match_one_process_on_the_whole_batch(tmp_path, grad_accum):
    toy = ToyModality()
    single = run_steps(Trainer(toy, config(toy), tmp_path))
    mp.start_processes(_worker, args=(free_port(), str(tmp_path), grad_accum), nprocs=WORLD,
                       join=True, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for rank in ranks:
        # the logged loss is the mean over the global batch, as in the single process
        assert rank["losses"] == pytest.approx(single["losses"], rel=1e-5)
        for step in range(STEPS):
            for g, ref in zip(rank["grads"][step], single["grads"][step], strict=True):
                torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-6)
        for name in ("params", "ema"):
            for p, ref in zip(rank[name], single[name], strict=True):
                torch.testing.assert_close(p, ref, rtol=1e-4, atol=1e-6)


def test_sampler_shards_are_disjoint_and_make_up_the_global_batch():
    whole = iter(EpochBatches(40, 8, seed=3))
    shards = [iter(EpochBatches(40, 8, seed=3, parts=4, take=[r, 2 + r])) for r in range(2)]
    for _ in range(12):  # across epoch boundaries
        batch = next(whole)
        parts = [next(s) + next(s) for s in shards]
        assert sorted(parts[0] + parts[1]) == sorted(batch)
        assert not set(parts[0]) & set(parts[1])


def cli_on_two_processes(args) -> list[Forked]:
    port = free_port()
    children = [Forked(args, env=rendezvous(r, port)) for r in range(WORLD)]
    for child in children:
        assert child.wait() == 0, "\n".join(child.output[-30:])
    return children


def test_cli_on_two_processes_writes_once_and_resumes_exactly(tmp_path, toy_registry):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\nbatch_size = 8\ncheckpoint_every = 3\nplot_every = 0\nthreads = 1\n"
                   "snapshot_every = 0\nlog_every = 1\ndevice = \"cpu\"\n")
    full, part = tmp_path / "full", tmp_path / "part"
    base = ["train", "-m", "toy", "--config", cfg]
    children = cli_on_two_processes(base + ["--out", full, "--steps", 7])
    # rank 0 alone reports and writes
    assert ["done" in "\n".join(c.output) for c in children] == [True, False]
    rows = read_metrics(full / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert json.loads((full / "config.json").read_text())["config"]["train"]["batch_size"] == 8
    assert sorted(p.name for p in (full / "checkpoints").glob("step-*.safetensors"))[-1] == (
        "step-0000007.safetensors"
    )
    assert (full / "samples" / "samples.pt").exists()

    cli_on_two_processes(base + ["--out", part, "--steps", 4])
    cli_on_two_processes(["train", "--resume", part, "--steps", 7])
    resumed = read_metrics(part / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 8))
    # every rank's noise continued from its saved RNG state: the same curve, bit for bit
    assert [r["loss"] for r in resumed] == [r["loss"] for r in rows]
