"""The training engine: AdamW + EMA on the denoising score-matching loss, into a run folder.

Run folder layout::

    config.json                  the resolved configuration (with modality and versions)
    metrics.jsonl                one JSON object per logged step
    checkpoints/step-NNNNNNN.safetensors / .state.pt   weights / optimizer + RNG + data order
    checkpoints/latest.json      names the newest complete checkpoint (the commit point)
    loss.png                     the loss curve (when matplotlib is installed)
    samples/                     samples written by the modality's writer
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff import __version__
from polydiff.checkpoint import atomic_write_text, load_state, load_weights, save_checkpoint
from polydiff.errors import UserError
from polydiff.generate import build_denoiser, filter_cond, generate
from polydiff.losses import DSMLoss
from polydiff.protocol import Batch
from polydiff.sde import build_sde

CHECKPOINT_DIR = "checkpoints"
KEEP_LAST = 2


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


class EpochBatches:
    """Shuffled batches of indices, reshuffled each epoch from (seed, epoch): resumable exactly."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, offset: int = 0):
        if n < batch_size:
            raise UserError(
                f"dataset has {n} items, fewer than the batch size {batch_size} (lower --batch-size)"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.offset = epoch, offset

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.n, generator=gen).tolist()
            per_epoch = self.n // self.batch_size
            while self.offset < per_epoch:
                i = self.offset
                self.offset += 1
                yield perm[i * self.batch_size : (i + 1) * self.batch_size]
            self.epoch, self.offset = self.epoch + 1, 0


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    wall_time: float
    final_loss: float
    checkpoint: Path
    samples: list[Path] = field(default_factory=list)


def versions(modality: Any) -> dict[str, str]:
    from polydiff.registry import get_registry

    out = {"polydiff": __version__}
    try:
        info = {i.name: i for i in get_registry().infos(check=False)}.get(modality.name)
        if info is not None:
            out[info.distribution] = info.version
    except Exception:  # versions are informative; never fail a run over them
        pass
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / CHECKPOINT_DIR / "latest.json"
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["weights"]
    return run_dir / CHECKPOINT_DIR / name


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)


class Trainer:
    """One training run of one modality; holds the model, EMA, optimizer and data order."""

    def __init__(self, modality: Any, config: dict[str, Any], run_dir: Path):
        self.modality, self.config, self.run_dir = modality, config, Path(run_dir)
        tc = config["train"]
        if tc.get("threads"):
            torch.set_num_threads(int(tc["threads"]))
        self.device = resolve_device(str(tc["device"]))
        torch.manual_seed(int(tc["seed"]))
        data = config["data"]
        source = data.get("path") or data["dataset"]
        self.dataset = modality.build_dataset(source, config, "train")
        self.denoiser = build_denoiser(modality, config).to(self.device)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False).eval()
        self.sde = build_sde(config["sde"])
        self.loss_fn = DSMLoss(self.sde, sigma_data=config["param"]["sigma_data"], **config["loss"])
        self.opt = torch.optim.AdamW(
            self.denoiser.parameters(),
            lr=float(tc["lr"]),
            betas=(float(tc["beta1"]), float(tc["beta2"])),
            weight_decay=float(tc["weight_decay"]),
        )
        self.batches = EpochBatches(len(self.dataset), int(tc["batch_size"]), int(tc["seed"]))
        self.step = 0
        self.metrics_path = self.run_dir / "metrics.jsonl"

    # --- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.opt.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "epoch": self.batches.epoch,
            "offset": self.batches.offset,
        }

    def save(self) -> Path:
        ckpt_dir = self.run_dir / CHECKPOINT_DIR
        stem = f"step-{self.step:07d}"
        meta = {
            "step": self.step,
            "modality": self.modality.name,
            "versions": versions(self.modality),
            "config": self.config,
        }
        path = save_checkpoint(
            ckpt_dir,
            stem,
            model=self.denoiser.state_dict(),
            ema=self.ema.state_dict(),
            state=self.state(),
            metadata=meta,
        )
        atomic_write_text(
            ckpt_dir / "latest.json",
            json.dumps({"weights": path.name, "state": f"{stem}.state.pt", "step": self.step}),
        )
        self._prune(ckpt_dir)
        return path

    def _prune(self, ckpt_dir: Path) -> None:
        stems = sorted(p.name[: -len(".safetensors")] for p in ckpt_dir.glob("step-*.safetensors"))
        for stem in stems[:-KEEP_LAST]:
            for suffix in (".safetensors", ".state.pt"):
                (ckpt_dir / f"{stem}{suffix}").unlink(missing_ok=True)

    def restore(self) -> None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise UserError(f"{self.run_dir}: no checkpoint to resume from")
        model, ema, meta = load_weights(path)
        state = load_state(path.parent, path.name[: -len(".safetensors")])
        if state is None or state.get("step") != meta.get("step"):
            raise UserError(f"{path}: training state is missing or does not match the weights")
        self.denoiser.load_state_dict(model)
        self.ema.load_state_dict(ema)
        self.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if torch.cuda.is_available() and state["rng_cuda"]:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.batches.epoch, self.batches.offset = int(state["epoch"]), int(state["offset"])
        self.step = int(state["step"])

    # --- loop --------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        tc = self.config["train"]
        warm = int(tc["warmup_steps"])
        return float(tc["lr"]) * min(1.0, (step + 1) / warm) if warm > 0 else float(tc["lr"])

    def ema_decay_at(self, step: int) -> float:
        # warm-up so that early EMA weights are not dominated by the random initialisation
        return min(float(self.config["train"]["ema_decay"]), (1 + step) / (10 + step))

    def train_step(self, batch: Batch) -> float:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        cond = filter_cond(self.modality, batch.cond)
        loss = self.loss_fn(
            self.denoiser, batch.x, mask=batch.mask, cond=cond, noise_fn=self.modality.shape_noise
        ).mean()
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = float(self.config["train"]["grad_clip"])
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.denoiser.parameters(), clip)
        self.opt.step()
        _ema_update(self.ema, self.denoiser, self.ema_decay_at(self.step))
        self.step += 1
        return value

    def _loader(self) -> Iterator[Batch]:
        workers = int(self.config["data"].get("num_workers", 0))
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.batches,
            collate_fn=self.modality.collate,
            num_workers=workers,
        )
        for batch in loader:
            yield batch.to(self.device)

    def fit(self, *, console: Any = None) -> tuple[float, int]:
        from polydiff.progress import StepProgress

        tc = self.config["train"]
        total, log_every = int(tc["steps"]), int(tc["log_every"])
        ckpt_every = int(tc["checkpoint_every"])
        self.denoiser.train()
        running, count, last_loss, skipped = 0.0, 0, float("nan"), 0
        t0 = time.perf_counter()
        data = self._loader()
        with StepProgress(total, "train", console=console, start=self.step) as bar:
            try:
                while self.step < total:
                    value = self.train_step(next(data))
                    if not math.isfinite(value):
                        skipped += 1
                        continue
                    running, count = running + value, count + 1
                    bar.advance(loss=value)
                    if self.step % log_every == 0 or self.step == total:
                        last_loss = running / count
                        self._log({"step": self.step, "loss": last_loss, "lr": self.lr_at(self.step),
                                   "it_s": bar.rate(), "time": time.perf_counter() - t0})
                        running, count = 0.0, 0
                    if ckpt_every > 0 and self.step % ckpt_every == 0 and self.step < total:
                        self.save()
            except KeyboardInterrupt:
                self.save()
                raise
        return last_loss, skipped

    def _log(self, record: Mapping[str, Any]) -> None:
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def plot_losses(run_dir: Path) -> Path | None:
    """loss.png from metrics.jsonl; skipped when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "loss.png"
    tmp = run_dir / ".loss.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
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
    """Train ``modality`` with ``config`` into ``run_dir``; returns where everything went."""
    run_dir = Path(run_dir)
    if not resume and latest_checkpoint(run_dir) is not None:
        raise UserError(f"{run_dir}: already holds a training run (use --resume or another --out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainer = Trainer(modality, config, run_dir)
    if resume:
        trainer.restore()
    else:
        record = {"modality": modality.name, "versions": versions(modality), "config": config}
        atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2))
    final_loss, _ = trainer.fit(console=console)
    ckpt = trainer.save()
    plot_losses(run_dir)
    written: list[Path] = []
    if sample_at_end:
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
        )
        written = modality.write_samples(
            _to_cpu(x), run_dir / "samples", mask=_to_cpu(layout.mask), cond=layout.cond
        )
    return TrainResult(run_dir, trainer.step, time.perf_counter() - t0, final_loss, ckpt, written)


def _to_cpu(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, Mapping):
        return {k: v.cpu() for k, v in state.items()}
    return state.cpu()
