"""The training engine: AdamW + EMA on the denoising score-matching loss, into a run folder.

Run folder layout (written by rank 0 only in a distributed run)::

    config.json                  the resolved configuration (with modality and versions)
    metrics.jsonl                one JSON object per logged step (and one per skipped step)
    checkpoints/step-NNNNNNN.safetensors / .state.pt   weights / optimizer + RNG + data order
    checkpoints/latest.json      names the newest complete checkpoint (the commit point)
    checkpoints/best.safetensors the checkpoint with the lowest smoothed training loss (a hard
                                 link to its step file) and best.json saying which one it is
    loss.png                     the loss curve, redrawn every ``plot_every`` steps
    samples/                     final samples written by the modality's writer
    samples/step-NNNNNNN/        periodic snapshots (``snapshot_every``)

What a step is: ``batch_size`` items, split evenly over ``world_size`` processes and
``grad_accum`` micro-batches each, so a step (and the learning rate, EMA and checkpoint schedule
attached to it) means the same thing however many processes train it. The data order is a
permutation per epoch derived from ``(seed, epoch)``; each global batch is a slice of it and each
rank and micro-batch takes its own part of that slice, so the union over ranks is the batch a single
process would see, and a resumed run continues the very same order.

Resuming restores weights, every EMA, the optimizer, the position in the data order, the RNG states
and the running loss statistics, so that (on CPU, and on one GPU with deterministic kernels) a run
stopped and resumed logs exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff import __version__, distributed
from polydiff.checkpoint import (
    FILE_MODE,
    STATE_SUFFIX,
    WEIGHTS_SUFFIX,
    atomic_link,
    atomic_write_text,
    check_compatible,
    load_all_weights,
    load_state,
    remove_stale_temps,
    save_checkpoint,
)
from polydiff.conditions import drop_conditions
from polydiff.config import data_source
from polydiff.errors import UserError
from polydiff.generate import build_denoiser, filter_cond, generate
from polydiff.losses import DSMLoss
from polydiff.protocol import Batch
from polydiff.sde import build_sde
from polydiff.state import state_to, tree_map

CHECKPOINT_DIR = "checkpoints"
#: default of ``train.keep_last`` (kept for code that imported it)
KEEP_LAST = 2
#: smoothing of the training loss that decides the best checkpoint (an EMA over steps)
LOSS_SMOOTHING = 0.98
PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adamw", "adam")


# ------------------------------------------------------------------------------------ outcomes


class TrainingStopped(Exception):
    """Training ended before ``steps``; ``str(e)`` is one line for the user."""

    def __init__(self, message: str, *, step: int, checkpoint: Path | None, run_dir: Path):
        super().__init__(message)
        self.step, self.checkpoint, self.run_dir = step, checkpoint, run_dir


class TrainingInterrupted(TrainingStopped):
    """SIGINT (Ctrl-C) or SIGTERM: a checkpoint was saved at ``step``; ``signum`` says which."""

    def __init__(self, message: str, *, signum: int, **kw: Any):
        super().__init__(message, **kw)
        self.signum = signum


class NonFiniteLossError(TrainingStopped):
    """``max_nonfinite`` steps in a row had a non-finite loss; the last checkpoint is untouched."""


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


# ------------------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` (``None``: plain fp32).

    ``auto`` is bf16 on CUDA devices that support it and fp32 on CPUs: on the AVX2 CPU we measured
    (see docs/training.md) bf16 autocast made a step several times slower, since without native bf16
    instructions every matmul and convolution converts. Ask for ``bf16`` explicitly on CPUs with
    AMX / AVX512-BF16 after measuring with benchmarks/train_speed.py.
    """
    setting = str(setting).lower()
    if setting not in PRECISIONS:
        raise UserError(f"train.precision = {setting!r}: expected one of {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if setting == "fp32" or (setting == "auto" and not cuda_bf16):
        return None
    if setting == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise UserError("train.precision = 'bf16': this GPU does not support bfloat16 (use fp32)")
    return torch.bfloat16


def resolve_channels_last(setting: Any, device: torch.device, model: nn.Module) -> bool:
    """``true``/``false``, or ``"auto"``: on CUDA for networks with 2-D convolutions."""
    if isinstance(setting, bool):
        return setting
    if str(setting).lower() != "auto":
        raise UserError(f"train.channels_last = {setting!r}: expected true, false or \"auto\"")
    has_conv2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return device.type == "cuda" and has_conv2d


def to_channels_last(state: Any) -> Any:
    """Rank-4 tensors of a state in channels-last memory order; other ranks as they are."""

    def one(v: torch.Tensor) -> torch.Tensor:
        return v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v

    return tree_map(one, state)


def ema_decays(tc: Mapping[str, Any]) -> list[float]:
    """``train.ema_decays`` when set (the first one samples), else ``[train.ema_decay]``."""
    decays = tc.get("ema_decays") or [tc["ema_decay"]]
    if isinstance(decays, (int, float)):
        decays = [decays]
    out = [float(d) for d in decays]
    for d in out:
        if not 0.0 <= d < 1.0:
            raise UserError(f"train.ema_decays: {d} is not in [0, 1)")
    return out


def plugin_distribution(modality: Any) -> tuple[str | None, str | None]:
    """(distribution, version) that provides ``modality``, when the registry knows it."""
    from polydiff.registry import get_registry

    try:
        info = {i.name: i for i in get_registry().infos(check=False)}.get(modality.name)
    except Exception:  # versions are informative; never fail a run over them
        return None, None
    return (info.distribution, info.version) if info is not None else (None, None)


def versions(modality: Any) -> dict[str, str]:
    out = {"polydiff": __version__}
    dist_name, version = plugin_distribution(modality)
    if dist_name is not None:
        out[dist_name] = version or ""
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / CHECKPOINT_DIR / "latest.json"
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["weights"]
    return Path(run_dir) / CHECKPOINT_DIR / name


def best_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / CHECKPOINT_DIR / "best.safetensors"
    return path if path.exists() else None


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        e_params = [p for p in ema.parameters() if p.is_floating_point()]
        m_params = [p.detach() for p in model.parameters() if p.is_floating_point()]
        if e_params:
            torch._foreach_lerp_(e_params, m_params, 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)


def _step_of(stem: str) -> int:
    try:
        return int(stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (a killed writer) is ignored."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class EpochBatches:
    """Shuffled batches of indices, reshuffled each epoch from (seed, epoch): resumable exactly.

    Each global batch of ``batch_size`` indices is cut into ``parts`` equal slices and the iterator
    yields the slices listed in ``take``, in that order (default: the whole batch). A rank of a
    distributed run with gradient accumulation takes ``[m * world + rank for m in range(accum)]``.
    ``epoch`` and ``offset`` (in global batches) say where the next batch comes from.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epoch: int = 0,
        offset: int = 0,
        *,
        parts: int = 1,
        take: Sequence[int] = (0,),
    ):
        if n < batch_size:
            raise UserError(
                f"dataset has {n} items, fewer than the batch size {batch_size} (lower --batch-size)"
            )
        if batch_size % parts:
            raise UserError(f"batch size {batch_size} does not split into {parts} equal parts")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.offset = epoch, offset
        self.parts, self.take = parts, list(take)

    @property
    def per_epoch(self) -> int:
        return self.n // self.batch_size

    def seek(self, global_batch: int) -> None:
        """Position the iterator before global batch number ``global_batch`` (from the start)."""
        self.epoch, self.offset = divmod(global_batch, self.per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        part = self.batch_size // self.parts
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.n, generator=gen).tolist()
            while self.offset < self.per_epoch:
                start = self.offset * self.batch_size
                self.offset += 1
                for k in self.take:
                    yield perm[start + k * part : start + (k + 1) * part]
            self.epoch, self.offset = self.epoch + 1, 0


def _rank_seed(seed: int, rank: int) -> int:
    return (seed * 1_000_003 + 7919 * rank) % (2**63 - 1)


# ------------------------------------------------------------------------------------- trainer


class Trainer:
    """One training run of one modality; holds the model, EMAs, optimizer and data order.

    In a distributed run (process group already joined) every rank builds a Trainer; the model is
    wrapped in DistributedDataParallel and only rank 0 writes files.
    """

    def __init__(self, modality: Any, config: dict[str, Any], run_dir: Path):
        self.modality, self.config, self.run_dir = modality, config, Path(run_dir)
        tc = self.tc = config["train"]
        if tc.get("threads"):
            torch.set_num_threads(int(tc["threads"]))
        self.dist = distributed.info()
        self.device = distributed.device_for(resolve_device(str(tc["device"])))
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)
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
        self.keep_last = int(tc.get("keep_last", KEEP_LAST))
        if self.keep_last < 1:
            raise UserError(f"train.keep_last = {self.keep_last}: must be at least 1")
        self.max_nonfinite = int(tc.get("max_nonfinite", 10))
        schedule = str(tc.get("lr_schedule", "constant")).lower()
        if schedule not in LR_SCHEDULES:
            raise UserError(f"train.lr_schedule = {schedule!r}: expected {' or '.join(LR_SCHEDULES)}")
        self.lr_schedule = schedule

        data = config["data"]
        self.dataset = modality.build_dataset(data_source(data), config, "train")
        if len(self.dataset) < self.batch_size:
            raise UserError(
                f"dataset has {len(self.dataset)} items, fewer than the batch size "
                f"{self.batch_size} (lower --batch-size)"
            )
        self.denoiser = build_denoiser(modality, config).to(self.device)
        self.channels_last = resolve_channels_last(
            tc.get("channels_last", "auto"), self.device, self.denoiser
        )
        if self.channels_last:
            self.denoiser.to(memory_format=torch.channels_last)
        self.amp_dtype = resolve_precision(tc.get("precision", "auto"), self.device)
        self.sde = build_sde(config["sde"])
        # range-checked with the other settings in polydiff.config.resolve
        self.cond_dropout = float(config["train"].get("cond_dropout", 0.0))
        self.loss_fn = DSMLoss(self.sde, sigma_data=config["param"]["sigma_data"], **config["loss"])
        self.opt = self._optimizer()

        self.train_model: nn.Module = self.denoiser
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.denoiser, device_ids=ids)
            self.train_model = self.ddp
            # same weights everywhere (DDP broadcast rank 0's); different noise on every rank
            torch.manual_seed(_rank_seed(self.seed, self.dist.rank))
        self.decays = ema_decays(tc)
        self.emas = [copy.deepcopy(self.denoiser).requires_grad_(False).eval() for _ in self.decays]
        if bool(tc.get("compile", False)):
            self.train_model = torch.compile(self.train_model)

        # counters: everything a resumed run needs to continue exactly
        self.step = 0
        self.batches_seen = 0  # global batches consumed (including skipped steps)
        self.skipped = 0
        self.nonfinite_streak = 0
        self.smooth_num, self.smooth_den = 0.0, 0.0
        self.best_loss, self.best_step = math.inf, -1
        self.window_sum, self.window_count = 0.0, 0
        self.elapsed = 0.0
        self.last_loss = float("nan")
        self.saved_step = -1
        self.loop_time = 0.0
        self.stop_requested = False
        self._signal: int | None = None
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.ckpt_dir = self.run_dir / CHECKPOINT_DIR
        self.snapshots: list[Path] = []

    @property
    def ema(self) -> nn.Module:
        """The EMA used for sampling (the first decay rate)."""
        return self.emas[0]

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def _optimizer(self) -> torch.optim.Optimizer:
        tc = self.tc
        name = str(tc.get("optimizer", "adamw")).lower()
        if name not in OPTIMIZERS:
            raise UserError(f"train.optimizer = {name!r}: expected {' or '.join(OPTIMIZERS)}")
        kwargs: dict[str, Any] = {
            "lr": float(tc["lr"]),
            "betas": (float(tc["beta1"]), float(tc["beta2"])),
            "eps": float(tc.get("eps", 1e-8)),
            "weight_decay": float(tc["weight_decay"]),
        }
        if self.device.type == "cuda":
            kwargs["fused"] = True
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(self.denoiser.parameters(), **kwargs)

    # --- state -------------------------------------------------------------------------------
    def smoothed_loss(self) -> float:
        return self.smooth_num / self.smooth_den if self.smooth_den > 0 else math.inf

    def _rng(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def _set_rng(self, rng: Mapping[str, Any]) -> None:
        torch.set_rng_state(rng["cpu"])
        if torch.cuda.is_available() and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])

    def state(self, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        rng = self._rng()
        per_epoch = len(self.dataset) // self.batch_size
        epoch, offset = divmod(self.batches_seen, per_epoch)
        return {
            "step": self.step,
            "optimizer": self.opt.state_dict(),
            "rng_cpu": rng["cpu"],
            "rng_cuda": rng["cuda"],
            "rng_ranks": rng_ranks or [rng],
            "world_size": self.dist.world_size,
            "batches_seen": self.batches_seen,
            "epoch": epoch,
            "offset": offset,
            "skipped": self.skipped,
            "nonfinite_streak": self.nonfinite_streak,
            "smooth_num": self.smooth_num,
            "smooth_den": self.smooth_den,
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "window_sum": self.window_sum,
            "window_count": self.window_count,
            "last_loss": self.last_loss,
            "elapsed": self.elapsed,
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "modality": self.modality.name,
            "protocol_version": int(getattr(self.modality, "protocol_version", 1)),
            "versions": versions(self.modality),
            "ema_decays": self.decays,
            "config": self.config,
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0); returns its weights path.

        Collective: every rank calls it at the same step, and rank 0 stores every rank's RNG state
        so that a resumed distributed run continues each rank's noise.
        """
        rng_ranks = distributed.all_gather_object(self._rng())
        if not self.is_main:
            self.saved_step = self.step
            return None
        smoothed = self.smoothed_loss()
        if smoothed < self.best_loss:
            self.best_loss, self.best_step = smoothed, self.step
        stem = f"step-{self.step:07d}"
        emas = {"ema" if i == 0 else f"ema{i}": e.state_dict() for i, e in enumerate(self.emas)}
        path = save_checkpoint(
            self.ckpt_dir,
            stem,
            model=self.denoiser.state_dict(),
            ema=emas.pop("ema"),
            state=self.state(rng_ranks),
            metadata=self.metadata(),
            extra=emas,
        )
        atomic_write_text(
            self.ckpt_dir / "latest.json",
            json.dumps({"weights": path.name, "state": f"{stem}{STATE_SUFFIX}", "step": self.step}),
        )
        self._link_best()
        self._prune()
        self.saved_step = self.step
        return path

    def _link_best(self) -> None:
        if self.best_step < 0:
            return
        src = self.ckpt_dir / f"step-{self.best_step:07d}{WEIGHTS_SUFFIX}"
        pointer = self.ckpt_dir / "best.json"
        record = {"weights": src.name, "step": self.best_step, "smoothed_loss": self.best_loss}
        if not src.exists():
            return
        with contextlib.suppress(OSError, json.JSONDecodeError):
            if json.loads(pointer.read_text()) == record and (self.ckpt_dir / "best.safetensors").exists():
                return
        atomic_link(src, self.ckpt_dir / "best.safetensors")
        atomic_write_text(pointer, json.dumps(record))

    def _prune(self) -> None:
        """Keep the last ``keep_last`` checkpoints up to this step and the best one; drop the rest,
        including checkpoints past this step (left by a killed run that we resumed before them)."""
        stems = sorted(
            {p.name[: -len(WEIGHTS_SUFFIX)] for p in self.ckpt_dir.glob(f"step-*{WEIGHTS_SUFFIX}")}
            | {p.name[: -len(STATE_SUFFIX)] for p in self.ckpt_dir.glob(f"step-*{STATE_SUFFIX}")},
            key=_step_of,
        )
        current = [s for s in stems if _step_of(s) <= self.step]
        keep = set(current[-self.keep_last :]) | {f"step-{self.best_step:07d}"}
        for stem in stems:
            if stem not in keep:
                for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX):
                    (self.ckpt_dir / f"{stem}{suffix}").unlink(missing_ok=True)

    def restore(self) -> Path:
        """Load the latest checkpoint of the run folder into this trainer; returns its path."""
        path = latest_checkpoint(self.run_dir)
        if path is None or not path.exists():
            raise UserError(f"{self.run_dir}: no checkpoint to resume from")
        groups, meta = load_all_weights(path)
        dist_name, version = plugin_distribution(self.modality)
        check_compatible(
            meta,
            path,
            protocol_version=int(getattr(self.modality, "protocol_version", 1)),
            distribution=dist_name,
            version=version,
        )
        state = load_state(path.parent, path.name[: -len(WEIGHTS_SUFFIX)])
        if state is None or state.get("step") != meta.get("step"):
            raise UserError(f"{path}: training state is missing or does not match the weights")
        self.denoiser.load_state_dict(groups["model"])
        saved_decays = [float(d) for d in meta.get("ema_decays", [self.decays[0]])]
        for decay, ema in zip(self.decays, self.emas, strict=True):
            if decay in saved_decays:
                i = saved_decays.index(decay)
                ema.load_state_dict(groups["ema" if i == 0 else f"ema{i}"])
            else:  # a decay rate added on resume starts from the current weights
                ema.load_state_dict(groups["model"])
        self.opt.load_state_dict(state["optimizer"])
        ranks = state.get("rng_ranks") or []
        if int(state.get("world_size", 1)) == self.dist.world_size and len(ranks) > self.dist.rank:
            self._set_rng(ranks[self.dist.rank])
        elif self.dist.rank == 0:
            self._set_rng({"cpu": state["rng_cpu"], "cuda": state["rng_cuda"]})
        else:  # another world size: deterministic, if not the same noise as before
            torch.manual_seed(_rank_seed(self.seed, self.dist.rank) + int(state["step"]))
        self.step = int(state["step"])
        per_epoch = len(self.dataset) // self.batch_size
        self.batches_seen = int(
            state.get("batches_seen", int(state["epoch"]) * per_epoch + int(state["offset"]))
        )
        self.skipped = int(state.get("skipped", 0))
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        self.smooth_num = float(state.get("smooth_num", 0.0))
        self.smooth_den = float(state.get("smooth_den", 0.0))
        self.best_loss = float(state.get("best_loss", math.inf))
        self.best_step = int(state.get("best_step", -1))
        self.window_sum = float(state.get("window_sum", 0.0))
        self.window_count = int(state.get("window_count", 0))
        self.last_loss = float(state.get("last_loss", float("nan")))
        self.elapsed = float(state.get("elapsed", 0.0))
        self.saved_step = self.step
        if self.is_main:
            self._clean_after_crash()
        distributed.barrier()
        return path

    def _clean_after_crash(self) -> None:
        """Drop what a killed run wrote after its last checkpoint: temporary files, checkpoints
        past it, metric rows past it (so the resumed run's rows follow on without duplicates)."""
        remove_stale_temps(self.ckpt_dir)
        remove_stale_temps(self.run_dir)
        self._prune()
        self._link_best()
        rows = read_metrics(self.metrics_path)
        kept = [r for r in rows if int(r.get("step", 0)) <= self.step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if not self.metrics_path.exists() or self.metrics_path.read_text() != text:
            atomic_write_text(self.metrics_path, text)

    # --- loop --------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        tc = self.tc
        base, warm = float(tc["lr"]), int(tc["warmup_steps"])
        if warm > 0 and step < warm:
            return base * (step + 1) / warm
        if self.lr_schedule == "cosine":
            floor = float(tc.get("lr_min", 0.0))
            span = max(1, int(tc["steps"]) - warm)
            progress = min(1.0, (step - warm) / span)
            return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return base

    def ema_decay_at(self, step: int, decay: float | None = None) -> float:
        # warm-up so that early EMA weights are not dominated by the random initialisation
        decay = self.decays[0] if decay is None else decay
        return min(decay, (1 + step) / (10 + step))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def micro_loss(self, batch: Batch) -> torch.Tensor:
        """Mean loss of one micro-batch through the training model (DDP / compiled)."""
        x = to_channels_last(batch.x) if self.channels_last else batch.x
        cond = filter_cond(self.modality, batch.cond)
        if self.cond_dropout > 0 and cond:
            cond = drop_conditions(cond, self.cond_dropout, self.modality)
        with self._autocast():
            per_sample = self.loss_fn(
                self.train_model, x, mask=batch.mask, cond=cond, noise_fn=self.modality.shape_noise
            )
        return per_sample.float().mean()

    def train_step(self, micro_batches: Batch | Sequence[Batch]) -> float:
        """One optimizer step over ``grad_accum`` micro-batches (one :class:`Batch` is accepted
        when ``grad_accum`` is 1). Returns the step's loss, averaged over the global batch, or a
        non-finite value when the step was skipped (loss or gradient not finite on some rank).

        Also agrees with the other ranks on whether a stop was requested (``stop_requested``).
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
        wants_stop = 1.0 if self._signal is not None else 0.0
        if self.dist.enabled:
            # a NaN on any rank makes the sum NaN: every rank skips the same steps
            loss_sum, stops = distributed.all_reduce_sum([local, wants_stop])
            value = loss_sum / self.dist.world_size
        else:
            value, stops = local, wants_stop
        self.stop_requested = stops > 0
        if not (math.isfinite(value) and math.isfinite(norm_value)):
            self.opt.zero_grad(set_to_none=True)
            return value if not math.isfinite(value) else float("nan")
        self.opt.step()
        for decay, ema in zip(self.decays, self.emas, strict=True):
            _ema_update(ema, self.denoiser, self.ema_decay_at(self.step, decay))
        self.step += 1
        return value

    def _micro_batches(self) -> Iterator[Batch]:
        """This rank's micro-batches from the current position in the data order, forever."""
        world, rank = self.dist.world_size, self.dist.rank
        sampler = EpochBatches(
            len(self.dataset),
            self.batch_size,
            self.seed,
            parts=world * self.grad_accum,
            take=[m * world + rank for m in range(self.grad_accum)],
        )
        sampler.seek(self.batches_seen)
        workers = int(self.config["data"].get("num_workers", 0))
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=self.modality.collate,
            num_workers=workers,
            # its own generator: creating the loader must not draw from the global RNG
            generator=torch.Generator().manual_seed(
                _rank_seed(self.seed, rank) + self.batches_seen
            ),
        )
        for batch in loader:
            yield batch.to(self.device)

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

    def fit(self, *, console: Any = None) -> tuple[float, int]:
        """Train until ``steps`` or a stop request; returns (last logged loss, skipped steps).

        ``stop_requested`` and ``_signal`` tell whether a signal ended it early. Raises
        :class:`NonFiniteLossError` after ``max_nonfinite`` skipped steps in a row.
        """
        from polydiff.progress import StepProgress

        tc = self.tc
        total, log_every = int(tc["steps"]), max(1, int(tc["log_every"]))
        ckpt_every = int(tc["checkpoint_every"])
        plot_every = int(tc.get("plot_every", 0))
        snapshot_every = int(tc.get("snapshot_every", 0))
        self.denoiser.train()
        segment_start = time.perf_counter()
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
        with bar, self._stop_on_signals(bar):
            while self.step < total and not self.stop_requested:
                micro = [next(data) for _ in range(self.grad_accum)]
                self.batches_seen += 1
                value = self.train_step(micro)
                self.elapsed = elapsed0 + time.perf_counter() - segment_start
                if not math.isfinite(value):
                    self._nonfinite(value, bar)
                    continue
                self.nonfinite_streak = 0
                self.window_sum, self.window_count = self.window_sum + value, self.window_count + 1
                self.smooth_num = LOSS_SMOOTHING * self.smooth_num + (1 - LOSS_SMOOTHING) * value
                self.smooth_den = LOSS_SMOOTHING * self.smooth_den + (1 - LOSS_SMOOTHING)
                bar.advance(loss=value)
                if self.step % log_every == 0 or self.step == total:
                    self.last_loss = self.window_sum / self.window_count
                    rate = bar.rate()
                    self._log(
                        {
                            "step": self.step,
                            "loss": self.last_loss,
                            "smoothed_loss": self.smoothed_loss(),
                            "lr": self.lr_at(self.step - 1),
                            "it_s": rate,
                            "samples_s": rate * self.batch_size,
                            "skipped": self.skipped,
                            "time": self.elapsed,
                        }
                    )
                    self.window_sum, self.window_count = 0.0, 0
                if ckpt_every > 0 and self.step % ckpt_every == 0 and self.step < total:
                    self.save()
                if plot_every > 0 and self.step % plot_every == 0 and self.is_main:
                    plot_losses(self.run_dir)
                if snapshot_every > 0 and self.step % snapshot_every == 0 and self.step < total:
                    self.snapshot()
        self.loop_time = time.perf_counter() - segment_start
        return self.last_loss, self.skipped

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

    def _log(self, record: Mapping[str, Any]) -> None:
        if not self.is_main:
            return
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def snapshot(self) -> list[Path]:
        """A few samples from the EMA through the modality's writer (rank 0); the global RNG
        state is left as it was, so snapshots do not change the training run."""
        if not self.is_main:
            return []
        sc = self.config["sample"]
        n = int(self.tc.get("snapshot_n", 8))
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            x, layout, _ = generate(
                self.modality,
                self.config,
                self.ema,
                n=n,
                sampler=str(sc["sampler"]),
                steps=int(sc["steps"]),
                schedule=str(sc["schedule"]),
                seed=int(sc["seed"]),
                device=self.device,
                dataset=self.dataset,
            )
        out = self.run_dir / "samples" / f"step-{self.step:07d}"
        written = self.modality.write_samples(
            state_to(x, "cpu"), out, mask=state_to(layout.mask, "cpu"), cond=layout.cond
        )
        if written:
            self.snapshots.append(written[0])
        return written


def plot_losses(run_dir: Path) -> Path | None:
    """loss.png from metrics.jsonl, replaced atomically; skipped when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import tempfile

    run_dir = Path(run_dir)
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r and "event" not in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    marker = "o" if len(rows) < 30 else None
    values = [r["loss"] for r in rows]
    ax.plot(steps, values, lw=1, alpha=0.6, marker=marker, ms=3, label="loss (mean per row)")
    if all("smoothed_loss" in r for r in rows):
        ax.plot(steps, [r["smoothed_loss"] for r in rows], lw=1.5, label="smoothed")
        ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if min(values) > 0 and max(values) / min(values) > 10:  # log scale when it spans decades
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.96)  # tight_layout costs 0.3 s
    out = run_dir / "loss.png"
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".loss.png.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


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
    if not resume and latest_checkpoint(run_dir) is not None:
        raise UserError(f"{run_dir}: already holds a training run (use --resume or another --out)")
    distributed.barrier()  # nobody writes before every rank has checked the folder
    t0 = time.perf_counter()
    trainer = Trainer(modality, config, run_dir)
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        trainer.restore()
    elif trainer.is_main:
        record = {"modality": modality.name, "versions": versions(modality), "config": config}
        atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2))
        # a run killed before its first checkpoint left rows that this fresh start replaces
        trainer.metrics_path.unlink(missing_ok=True)
        remove_stale_temps(run_dir / CHECKPOINT_DIR)
    distributed.barrier()
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
            f"continue with: polydiff train --resume {run_dir}",
            signum=signum,
            step=trainer.step,
            checkpoint=ckpt,
            run_dir=run_dir,
        )
    written: list[Path] = []
    if sample_at_end and trainer.is_main:
        sc = config["sample"]
        x, layout, _ = generate(
            modality,
            config,
            trainer.ema,
            n=int(sc["n"]),
            sampler=str(sc["sampler"]),
            steps=int(sc["steps"]),
            schedule=str(sc["schedule"]),
            seed=int(sc["seed"]),
            device=trainer.device,
            dataset=trainer.dataset,
        )
        written = modality.write_samples(
            state_to(x, "cpu"), run_dir / "samples", mask=state_to(layout.mask, "cpu"), cond=layout.cond
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


