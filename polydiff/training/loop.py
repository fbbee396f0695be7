"""The optimizer step and the loop over steps, with the periodic work and the stop requests.

What a step is: ``batch_size`` items, split evenly over ``world_size`` processes and ``grad_accum``
micro-batches each, so a step (and the learning rate, EMA and checkpoint schedule attached to it)
means the same thing however many processes train it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff import distributed, hooks
from polydiff.conditions import drop_conditions
from polydiff.generate import filter_cond
from polydiff.protocol import Batch
from polydiff.training.actions import PeriodicAction, run_due
from polydiff.training.counters import Counters, counter
from polydiff.training.data_order import rank_loader
from polydiff.training.ema import ema_update, warmup_decay
from polydiff.training.hardware import autocast
from polydiff.training.metrics_file import append_row, plot_losses
from polydiff.training.optim import LRSchedule
from polydiff.training.outcomes import NonFiniteLossError
from polydiff.training.run_folder import latest_checkpoint

#: the clock the loop times itself with (training time, wall-clock checkpoints)
clock = time.perf_counter


class TrainingLoop:
    """Steps and the loop over them; :class:`polydiff.train.Trainer` assembles what they use and
    provides :meth:`save` and :meth:`snapshot`."""

    modality: Any
    config: dict[str, Any]
    tc: dict[str, Any]
    dist: distributed.DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    denoiser: nn.Module
    train_model: nn.Module  # the denoiser as trained: wrapped in DDP, compiled
    ddp: nn.parallel.DistributedDataParallel | None
    emas: list[nn.Module]
    decays: list[float]
    opt: torch.optim.Optimizer
    schedule: LRSchedule
    loss_fn: Any
    cond_dropout: float
    dataset: Any
    seed: int
    batch_size: int
    grad_accum: int
    max_nonfinite: int
    checkpoint_minutes: float  # 0: no wall-clock checkpoints
    noise_space: Any  # the modality's NoiseSpace: projects the loss's noise and the output
    run_dir: Path
    metrics_path: Path
    counters: Counters

    step = counter()
    batches_seen = counter()
    skipped = counter()
    nonfinite_streak = counter()
    best_loss = counter()
    last_loss = counter()
    elapsed = counter()
    saved_step = counter()

    stop_requested = False  # agreed by every rank in train_step
    checkpoint_requested = False  # likewise: the wall-clock checkpoint is due
    loop_time = 0.0  # seconds of the last fit() (this process's segment of the run)
    _signal: int | None = None

    def save(self) -> Path | None:
        raise NotImplementedError

    def snapshot(self) -> list[Path]:
        raise NotImplementedError

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def lr_at(self, step: int) -> float:
        return self.schedule(step)

    def ema_decay_at(self, step: int, decay: float | None = None) -> float:
        return warmup_decay(step, self.decays[0] if decay is None else decay)

    def smoothed_loss(self) -> float:
        return self.counters.smoothed_loss()

    # --- one step ----------------------------------------------------------------------------
    def micro_loss(self, batch: Batch) -> torch.Tensor:
        """Mean loss of one micro-batch through the training model (DDP / compiled)."""
        cond = filter_cond(self.modality, batch.cond)
        if self.cond_dropout > 0 and cond:
            cond = drop_conditions(cond, self.cond_dropout, self.modality)
        with autocast(self.device, self.amp_dtype):
            per_sample = self.loss_fn(
                self.train_model, batch.x, mask=batch.mask, cond=cond, project=self.noise_space.project
            )
        return per_sample.float().mean()

    def train_step(self, micro_batches: Batch | Sequence[Batch]) -> float:
        """One optimizer step over ``grad_accum`` micro-batches (one :class:`Batch` is accepted
        when ``grad_accum`` is 1). Returns the step's loss, averaged over the global batch, or a
        non-finite value when the step was skipped (loss or gradient not finite on some rank).

        Also agrees with the other ranks on whether a stop was requested (``stop_requested``) and
        whether a wall-clock checkpoint is due (``checkpoint_requested``), in the same collective.
        """
        batches = [micro_batches] if isinstance(micro_batches, Batch) else list(micro_batches)
        lr = self.lr_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()
            with sync:
                loss = self.micro_loss(batch)
                (loss / len(batches)).backward()
            total += loss.detach()
        clip = float(self.tc["grad_clip"])
        norm = torch.nn.utils.clip_grad_norm_(
            self.denoiser.parameters(), clip if clip > 0 else math.inf
        )
        # one device-to-host copy per step for both numbers
        local, norm_value = torch.stack([total / len(batches), norm.float()]).tolist()
        votes = [float(self._signal is not None), float(self.checkpoint_due())]
        if self.dist.enabled:
            # a NaN on any rank makes the sum NaN: every rank skips the same steps
            loss_sum, *votes = distributed.all_reduce_sum([local, *votes])
            value = loss_sum / self.dist.world_size
        else:
            value = local
        self.stop_requested, self.checkpoint_requested = (v > 0 for v in votes)
        if not (math.isfinite(value) and math.isfinite(norm_value)):
            self.opt.zero_grad(set_to_none=True)
            return value if not math.isfinite(value) else float("nan")
        self.opt.step()
        for decay, ema in zip(self.decays, self.emas, strict=True):
            ema_update(ema, self.denoiser, self.ema_decay_at(self.step, decay))
        self.step += 1
        return value

    def checkpoint_due(self) -> bool:
        """Whether ``checkpoint_minutes`` of training have passed since the last checkpoint."""
        c = self.counters
        since = c.elapsed - c.saved_elapsed
        return self.checkpoint_minutes > 0 and since >= 60 * self.checkpoint_minutes

    # --- the loop ----------------------------------------------------------------------------
    def periodic_actions(self, bar: Any) -> list[PeriodicAction]:
        """The work done between steps, in order (a checkpoint sees the row just logged)."""
        tc = self.tc
        log_every, plot_every = max(1, int(tc["log_every"])), int(tc.get("plot_every", 0))
        return [
            PeriodicAction("log", log_every, lambda: self._log_window(bar), at_last=True),
            PeriodicAction("checkpoint", int(tc["checkpoint_every"]), self.save, at_last=False),
            PeriodicAction("clock checkpoint", self._clock_checkpoint_due, self.save, at_last=False),
            PeriodicAction("plot", plot_every, self._plot),
            PeriodicAction("snapshot", int(tc.get("snapshot_every", 0)), self.snapshot, at_last=False),
        ]

    def fit(self, *, console: Any = None) -> tuple[float, int]:
        """Train until ``steps`` or a stop request; returns (last logged loss, skipped steps).

        ``stop_requested`` and ``_signal`` tell whether a signal ended it early. Raises
        :class:`NonFiniteLossError` after ``max_nonfinite`` skipped steps in a row.
        """
        from polydiff.progress import StepProgress

        total = int(self.tc["steps"])
        self.denoiser.train()
        segment_start = clock()
        elapsed0 = self.elapsed
        data = self._micro_batches()
        bar = StepProgress(
            total,
            "train",
            console=console,
            start=self.step,
            items_per_step=self.batch_size,
            enabled=self.is_main,
        )
        actions = self.periodic_actions(bar)
        with bar, self._stop_on_signals(bar):
            while self.step < total and not self.stop_requested:
                micro = [next(data) for _ in range(self.grad_accum)]
                self.batches_seen += 1
                value = self.train_step(micro)
                self.elapsed = elapsed0 + clock() - segment_start
                if not math.isfinite(value):
                    self._nonfinite(value, bar)
                    continue
                self.counters.observe(value)
                bar.advance(loss=value)
                run_due(actions, self.step, total)
        self.loop_time = clock() - segment_start
        return self.last_loss, self.skipped

    def _micro_batches(self) -> Iterator[Batch]:
        """This rank's micro-batches from the current position in the data order, forever."""
        loader = rank_loader(
            self.dataset,
            functools.partial(hooks.collate, self.modality),
            batch_size=self.batch_size,
            seed=self.seed,
            position=self.batches_seen,
            world_size=self.dist.world_size,
            rank=self.dist.rank,
            grad_accum=self.grad_accum,
            num_workers=int(self.config["data"].get("num_workers", 0)),
        )
        for batch in loader:
            yield batch.to(self.device)

    def _clock_checkpoint_due(self, step: int) -> bool:
        # the step checkpoint of this very step already reset the clock
        return self.checkpoint_requested and self.saved_step != step

    def _log_window(self, bar: Any) -> None:
        c = self.counters
        loss, rate = c.close_window(), bar.rate()
        self._log(
            {
                "step": c.step,
                "loss": loss,
                "smoothed_loss": c.smoothed_loss(),
                "lr": self.lr_at(c.step - 1),
                "it_s": rate,
                "samples_s": rate * self.batch_size,
                "skipped": c.skipped,
                "time": c.elapsed,
            }
        )

    def _plot(self) -> None:
        if self.is_main:
            plot_losses(self.run_dir)

    def _log(self, record: Mapping[str, Any]) -> None:
        if self.is_main:
            append_row(self.metrics_path, record)

    def _nonfinite(self, value: float, bar: Any) -> None:
        self.skipped += 1
        self.nonfinite_streak += 1
        at = self.step + 1
        bar.print(
            f"[yellow]warning:[/] non-finite loss ({value}) at step {at}: step skipped "
            f"({self.nonfinite_streak} in a row, {self.skipped} in all)"
        )
        self._log({"step": self.step, "event": "nonfinite", "at_step": at, "skipped": self.skipped})
        if self.nonfinite_streak >= self.max_nonfinite:
            ckpt = latest_checkpoint(self.run_dir)
            where = f"last good checkpoint: {ckpt}" if ckpt else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"training stopped at step {self.step}: {self.nonfinite_streak} non-finite losses "
                f"in a row (train.max_nonfinite = {self.max_nonfinite}); {where}; "
                "check the data or lower train.lr",
                step=self.step,
                checkpoint=ckpt,
                run_dir=self.run_dir,
            )

    @contextlib.contextmanager
    def _stop_on_signals(self, bar: Any) -> Iterator[None]:
        """SIGINT / SIGTERM ask the loop to stop after the current step and save; a second
        Ctrl-C aborts at once (without saving)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signum
            if self.is_main:
                bar.print(
                    f"{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
                    "(Ctrl-C again to abort without saving)"
                )

        sigs = [signal.SIGINT, signal.SIGTERM]
        previous = {s: signal.getsignal(s) for s in sigs}
        for s in sigs:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
