"""The training engine: AdamW + EMA on the denoising score-matching loss, into a run folder.

Run folder layout (written by rank 0 only in a distributed run)::

    config.json                  the resolved configuration (with modality and versions)
    metrics.jsonl                one JSON object per logged step (and one per skipped step)
    checkpoints/step-NNNNNNN.safetensors / .state.pt   weights / optimizer + RNG + counters
    checkpoints/latest.json      names the newest complete checkpoint (the commit point)
    checkpoints/best.safetensors the checkpoint with the lowest smoothed training loss (a hard
                                 link to its step file) and best.json saying which one it is
    loss.png                     the loss curve, redrawn every ``plot_every`` steps
    samples/                     final samples written by the modality's writer
    samples/step-NNNNNNN/        periodic snapshots (``snapshot_every``)

Checkpoints come every ``checkpoint_every`` steps and after ``checkpoint_minutes`` of training,
whichever is first. Resuming restores weights, every EMA, the optimizer, the position in the data
order, the RNG states and the loop's counters, so that (on CPU, and on one GPU with deterministic
kernels) a run stopped and resumed logs exactly the losses of an uninterrupted one.

This module assembles the pieces of :mod:`polydiff.training` (one idea each) and re-exports the
names callers use.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff import distributed, hooks
from polydiff.checkpoint import check_weights_fit
from polydiff.config import data_source
from polydiff.errors import UserError
from polydiff.generate import build_denoiser
from polydiff.losses import DSMLoss
from polydiff.sde import build_sde
from polydiff.training.checkpoints import KEEP_LAST, CheckpointFolder, checkpoint_minutes
from polydiff.training.counters import LOSS_SMOOTHING, Counters
from polydiff.training.data_order import EpochBatches
from polydiff.training.ema import ema_copies, ema_decays, load_emas
from polydiff.training.hardware import (
    PRECISIONS,
    CompiledOrEager,
    resolve_device,
    resolve_precision,
    select_device,
    uses_channels_last,
)
from polydiff.training.loop import TrainingLoop
from polydiff.training.metrics_file import METRICS_FILE, plot_losses, read_metrics
from polydiff.training.optim import LR_SCHEDULES, OPTIMIZERS, LRSchedule, build_optimizer
from polydiff.training.outcomes import NonFiniteLossError, TrainingInterrupted, TrainingStopped
from polydiff.training.rng import rank_seed, restore_rng, rng_entries, rng_state
from polydiff.training.run_folder import (
    CHECKPOINT_DIR,
    best_checkpoint,
    check_new_run,
    latest_checkpoint,
    plugin_distribution,
    start_run,
    versions,
)
from polydiff.training.samples import write_samples_from

__all__ = [
    "CHECKPOINT_DIR",
    "KEEP_LAST",
    "LOSS_SMOOTHING",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "PRECISIONS",
    "EpochBatches",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "TrainingStopped",
    "best_checkpoint",
    "ema_decays",
    "latest_checkpoint",
    "plot_losses",
    "plugin_distribution",
    "read_metrics",
    "resolve_device",
    "resolve_precision",
    "train",
    "versions",
]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    wall_time: float
    final_loss: float
    checkpoint: Path
    samples: list[Path] = field(default_factory=list)
    best: Path | None = None
    best_loss: float = float("nan")
    skipped: int = 0
    steps_per_s: float = 0.0
    samples_per_s: float = 0.0
    metrics: Path | None = None
    plot: Path | None = None
    snapshots: list[Path] = field(default_factory=list)


class Trainer(TrainingLoop):
    """One training run of one modality; holds the model, EMAs, optimizer, data and counters.

    In a distributed run (process group already joined) every rank builds a Trainer; the model is
    wrapped in DistributedDataParallel and only rank 0 writes files.
    """

    def __init__(self, modality: Any, config: dict[str, Any], run_dir: Path):
        self.modality, self.config, self.run_dir = modality, config, Path(run_dir)
        tc = self.tc = config["train"]
        self.dist = distributed.info()
        self.device = select_device(tc)
        self.seed = int(tc["seed"])
        torch.manual_seed(self.seed)

        self.grad_accum = int(tc.get("grad_accum", 1))
        if self.grad_accum < 1:
            raise UserError(f"train.grad_accum = {self.grad_accum}: must be at least 1")
        self.batch_size = int(tc["batch_size"])
        parts = self.dist.world_size * self.grad_accum
        if self.batch_size % parts:
            raise UserError(
                f"train.batch_size = {self.batch_size} must be divisible by world size × grad_accum "
                f"= {self.dist.world_size} × {self.grad_accum}"
            )
        self.micro_batch = self.batch_size // parts
        self.checkpoints = CheckpointFolder(
            self.run_dir, int(tc.get("keep_last", KEEP_LAST)), int(tc.get("checkpoint_every", 0))
        )
        self.checkpoint_minutes = checkpoint_minutes(tc)
        self.max_nonfinite = int(tc.get("max_nonfinite", 10))
        self.schedule = LRSchedule.from_config(tc)

        self.dataset = modality.build_dataset(data_source(config["data"]), config, "train")
        if len(self.dataset) < self.batch_size:
            raise UserError(
                f"dataset has {len(self.dataset)} items, fewer than the batch size "
                f"{self.batch_size} (lower --batch-size)"
            )
        # the network picks its own memory format for the device (e.g. channels-last on CUDA)
        self.denoiser = build_denoiser(modality, config).to(self.device)
        self.amp_dtype = resolve_precision(tc.get("precision", "auto"), self.device)
        self.sde = build_sde(config["sde"])
        # range-checked with the other settings in polydiff.config.resolve
        self.cond_dropout = float(tc.get("cond_dropout", 0.0))
        self.loss_fn = DSMLoss(self.sde, sigma_data=config["param"]["sigma_data"], **config["loss"])
        self.noise_space = hooks.noise_space(modality, config)
        self.opt = build_optimizer(self.denoiser.parameters(), tc, self.device)

        self.train_model: nn.Module = self.denoiser
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.denoiser, device_ids=ids)
            self.train_model = self.ddp
            # same weights everywhere (DDP broadcast rank 0's); different noise on every rank
            torch.manual_seed(rank_seed(self.seed, self.dist.rank))
        self.decays = ema_decays(tc)
        self.emas = ema_copies(self.denoiser, len(self.decays))
        if bool(tc.get("compile", False)):
            self.train_model = CompiledOrEager(self.train_model)

        self.counters = Counters()
        self.metrics_path = self.run_dir / METRICS_FILE
        self.snapshots: list[Path] = []

    @property
    def ema(self) -> nn.Module:
        """The EMA used for sampling (the first decay rate)."""
        return self.emas[0]

    @property
    def channels_last(self) -> bool:
        """Whether the network chose channels-last weights (reported; the trainer never sets it)."""
        return uses_channels_last(self.denoiser)

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What a checkpoint holds besides the weights: optimizer, RNG streams, counters."""
        return {
            "step": self.step,
            "counters": self.counters.to_state(),
            "optimizer": self.opt.state_dict(),
            **rng_entries(rng_ranks or [rng_state()], self.dist.world_size),
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "modality": self.modality.name,
            "protocol_version": str(getattr(self.modality, "protocol_version", 1)),
            "versions": versions(self.modality),
            "ema_decays": self.decays,
            "config": self.config,
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0); returns its weights path.

        Collective: every rank calls it at the same step, and rank 0 stores every rank's RNG state
        so that a resumed distributed run continues each rank's noise.
        """
        rng_ranks = distributed.all_gather_object(rng_state())
        self.counters.mark_saved()
        if not self.is_main:
            return None
        c = self.counters
        path = self.checkpoints.write(
            c.step,
            model=self.denoiser.state_dict(),
            emas=[e.state_dict() for e in self.emas],
            state=self.state(rng_ranks),
            metadata=self.metadata(),
        )
        self.checkpoints.link_best(c.best_step, c.best_loss)
        self.checkpoints.prune(c.step, c.best_step)
        return path

    def restore(self) -> Path:
        """Load the latest checkpoint of the run folder into this trainer; returns its path."""
        dist_name, version = plugin_distribution(self.modality)
        path, groups, meta, state = self.checkpoints.read_latest(
            protocol_version=str(getattr(self.modality, "protocol_version", 1)),
            distribution=dist_name,
            version=version,
        )
        # every group must fit the network config.json builds: one line naming the first
        # parameter that differs, not load_state_dict's page of mismatches
        expected = self.denoiser.state_dict()
        for name in sorted(groups):
            check_weights_fit(expected, groups[name], path)
        self.denoiser.load_state_dict(groups["model"])
        load_emas(self.emas, self.decays, groups, meta.get("ema_decays", [self.decays[0]]))
        self.opt.load_state_dict(state["optimizer"])
        restore_rng(state, rank=self.dist.rank, world_size=self.dist.world_size, seed=self.seed)
        self.counters = Counters.from_state(state, len(self.dataset) // self.batch_size)
        if self.is_main:
            c = self.counters
            self.checkpoints.clean_after_crash(c.step, c.best_step, c.best_loss)
        distributed.barrier()
        return path

    def snapshot(self) -> list[Path]:
        """A few samples from the EMA through the modality's writer (rank 0); the training run
        does not notice them."""
        if not self.is_main:
            return []
        written = write_samples_from(
            self.modality,
            self.config,
            self.ema,
            self.run_dir / "samples" / f"step-{self.step:07d}",
            n=int(self.tc.get("snapshot_n", 8)),
            device=self.device,
            dataset=self.dataset,
            keep_rng=True,
            run_dir=self.run_dir,
        )
        if written:
            self.snapshots.append(written[0])
        return written


def train(
    modality: Any,
    config: dict[str, Any],
    run_dir: Path,
    *,
    resume: bool = False,
    sample_at_end: bool = True,
    console: Any = None,
) -> TrainResult:
    """Train ``modality`` with ``config`` into ``run_dir``; returns where everything went.

    Under torchrun (``WORLD_SIZE`` > 1) the process group is joined here if the caller has not.
    Raises :class:`TrainingInterrupted` after saving when stopped by SIGINT / SIGTERM, and
    :class:`NonFiniteLossError` when too many steps in a row were not finite.
    """
    run_dir = Path(run_dir)
    tc = config["train"]
    distributed.setup(str(tc["device"]), str(tc.get("dist_backend", "auto")))
    if not resume:
        check_new_run(run_dir)
    distributed.barrier()  # nobody writes before every rank has checked the folder
    t0 = time.perf_counter()
    trainer = Trainer(modality, config, run_dir)
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        trainer.restore()
    elif trainer.is_main:
        start_run(run_dir, modality, config)
    distributed.barrier()
    return run_to_end(
        trainer, modality, config, run_dir, t0=t0, sample_at_end=sample_at_end, console=console,
        resume_command=f"polydiff train --resume {run_dir}",
    )


def run_to_end(
    trainer: Trainer,
    modality: Any,
    config: dict[str, Any],
    run_dir: Path,
    *,
    t0: float,
    sample_at_end: bool,
    console: Any,
    resume_command: str,
) -> TrainResult:
    """Fit a built (or restored) trainer, save, plot, write the end-of-run samples, and report;
    shared by :func:`train` and :func:`polydiff.distill.distill`. Raises
    :class:`TrainingInterrupted` (naming ``resume_command``) after saving when a signal stopped it."""
    start_step = trainer.step
    final_loss, skipped = trainer.fit(console=console)
    if trainer.step != trainer.saved_step:
        trainer.save()
    ckpt = latest_checkpoint(run_dir) or run_dir
    plot = plot_losses(run_dir) if trainer.is_main else None
    if trainer.stop_requested or trainer._signal is not None:
        signum = trainer._signal or int(signal.SIGINT)
        raise TrainingInterrupted(
            f"{signal.Signals(signum).name} at step {trainer.step}: checkpoint saved to {ckpt}; "
            f"continue with: {resume_command}",
            signum=signum,
            step=trainer.step,
            checkpoint=ckpt,
            run_dir=run_dir,
        )
    written: list[Path] = []
    if sample_at_end and trainer.is_main:
        written = write_samples_from(
            modality,
            config,
            trainer.ema,
            run_dir / "samples",
            n=int(config["sample"]["n"]),
            device=trainer.device,
            dataset=trainer.dataset,
            run_dir=run_dir,
        )
    done = trainer.step - start_step
    steps_per_s = done / trainer.loop_time if done and trainer.loop_time > 0 else 0.0
    return TrainResult(
        run_dir,
        trainer.step,
        time.perf_counter() - t0,
        final_loss,
        ckpt,
        written,
        best=best_checkpoint(run_dir),
        best_loss=trainer.best_loss,
        skipped=skipped,
        steps_per_s=steps_per_s,
        samples_per_s=steps_per_s * trainer.batch_size,
        metrics=trainer.metrics_path,
        plot=plot,
        snapshots=list(trainer.snapshots),
    )
