"""Opening a run folder for the commands that read one (`sample`, `evaluate`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polydiff.cli.common import fail


@dataclass
class OpenRun:
    plugin: Any
    config: dict[str, Any]
    denoiser: Any
    checkpoint: Path
    device: Any
    meta: dict[str, Any]
    weights: str  # "ema" or "raw"


def read_record(run_dir: Path) -> tuple[dict[str, Any], str]:
    """(config, modality name) of a run folder, or a one-line error."""
    record_path = run_dir / "config.json"
    if not record_path.is_file():
        raise fail(f"{run_dir}: not a run folder (no config.json)")
    try:
        record = json.loads(record_path.read_text())
        return record["config"], record["modality"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise fail(f"{record_path}: unreadable run record ({exc})") from None


def check_sampler(name: str) -> None:
    from polydiff.sampling import get_sampler

    try:
        get_sampler(name)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None


def load_denoiser(
    run_dir: Path, plugin: Any, config: dict[str, Any], *, checkpoint: str = "latest",
    device: str = "auto", ema: bool = True,
) -> OpenRun:
    """The run's network with its EMA (or raw) weights, after a version-compatibility check."""
    from polydiff.checkpoint import check_compatible, load_weights
    from polydiff.generate import build_denoiser
    from polydiff.training.hardware import resolve_device
    from polydiff.training.run_folder import best_checkpoint, latest_checkpoint, plugin_distribution

    if checkpoint not in ("latest", "best"):
        raise fail(f"--checkpoint {checkpoint}: expected latest or best")
    ckpt = (best_checkpoint if checkpoint == "best" else latest_checkpoint)(run_dir)
    if ckpt is None or not ckpt.exists():
        raise fail(f"{run_dir}: no {checkpoint} checkpoint found")
    dev = resolve_device(device)
    model_sd, ema_sd, meta = load_weights(ckpt)
    dist_name, version = plugin_distribution(plugin)
    check_compatible(
        meta,
        ckpt,
        protocol_version=str(getattr(plugin, "protocol_version", 1)),
        distribution=dist_name,
        version=version,
    )
    denoiser = build_denoiser(plugin, config)
    use_ema = bool(ema and ema_sd)
    denoiser.load_state_dict(ema_sd if use_ema else model_sd)
    denoiser.to(dev).eval()
    return OpenRun(plugin, config, denoiser, ckpt, dev, meta, "ema" if use_ema else "raw")


def sample_run(
    run: OpenRun, *, n: int, sampler: str, steps: int, schedule: str, seed: int, **options: Any
) -> tuple[Any, Any, int]:
    """Sample a run's model with a progress bar: (samples, layout batch, network evaluations).

    ``options`` go to :func:`polydiff.generate.generate` (``cond``, ``guidance``, ``known``, ...).
    """
    import torch

    from polydiff.cli.common import err_console
    from polydiff.generate import generate
    from polydiff.progress import StepProgress

    rounds = int(options.get("imputation_resample", 1)) if options.get("known") is not None else 1
    total = steps * max(1, rounds)  # RePaint repeats each step
    with torch.no_grad(), StepProgress(total, f"sample ({sampler})", console=err_console) as bar:
        return generate(
            run.plugin,
            run.config,
            run.denoiser,
            n=n,
            sampler=sampler,
            steps=steps,
            schedule=schedule,
            seed=seed,
            device=run.device,
            callback=lambda i, x, d: bar.advance(),
            **options,
        )


def to_cpu(state: Any) -> Any:
    from polydiff.state import state_to

    return state_to(state, "cpu")
