"""Opening a run folder for the commands that read one (`sample`, `evaluate`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
    """(config, modality name) of a run folder, or a one-line error for a folder that is not a
    run or a damaged ``config.json``."""
    from polydiff.training.run_folder import read_run_record

    return read_run_record(run_dir)


def open_record(run_dir: Path) -> tuple[dict[str, Any], str, Any]:
    """(config, modality name, plugin) of a run folder, its values checked against their
    declarations like a new run's (a hand-edited ``config.json`` is one line, not a traceback)."""
    from polydiff.config import check_values
    from polydiff.registry import get_registry

    cfg, name = read_record(run_dir)
    plugin = get_registry().load(name)
    check_values(cfg, str(Path(run_dir) / "config.json"), plugin)
    return cfg, name, plugin


def check_sampler(name: str, where: str = "") -> None:
    """``name`` is a registered sampler; ``where`` (``"cfg.toml: sample.sampler"``) prefixes the
    one-line error when the name came from a file."""
    from polydiff.sampling import get_sampler

    try:
        get_sampler(name)
    except KeyError as exc:
        raise fail(f"{where}: {exc.args[0]}" if where else str(exc.args[0])) from None


def load_denoiser(
    run_dir: Path, plugin: Any, config: dict[str, Any], *, checkpoint: str = "latest",
    device: str = "auto", ema: bool = True,
) -> OpenRun:
    """The run's network with its EMA (or raw) weights, after a version-compatibility check."""
    from polydiff.checkpoint import check_compatible, check_weights_fit, load_weights
    from polydiff.generate import build_denoiser
    from polydiff.training.hardware import resolve_device
    from polydiff.training.run_folder import best_checkpoint, latest_checkpoint, plugin_distribution

    if checkpoint not in ("latest", "best"):
        raise fail(f"--checkpoint {checkpoint}: expected latest or best")
    ckpt = (best_checkpoint if checkpoint == "best" else latest_checkpoint)(run_dir)
    if ckpt is None:
        raise fail(f"{run_dir}: no {checkpoint} checkpoint found")
    if not ckpt.is_file():
        raise fail(f"{ckpt}: the {checkpoint} checkpoint is missing")
    dev = resolve_device(device)
    threads = int((config.get("train") or {}).get("threads") or 0)
    if threads > 0:
        import torch

        # the run's own thread setting: a small network on a busy machine is many times slower
        # with torch's default (all cores, spinning) than with the count it was tuned for
        torch.set_num_threads(threads)
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
    chosen = ema_sd if use_ema else model_sd
    check_weights_fit(denoiser.state_dict(), chosen, ckpt)
    denoiser.load_state_dict(chosen)
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
    from polydiff.state import leaves

    rounds = int(options.get("imputation_resample", 1)) if options.get("known") is not None else 1
    total = steps * max(1, rounds)  # RePaint repeats each step
    with torch.no_grad(), StepProgress(total, f"sample ({sampler})", console=err_console) as bar, \
            _out_of_memory_is_one_line(n):
        x, layout, nfe = generate(
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
    if not all(bool(torch.isfinite(t).all()) for t in leaves(x)):
        # a diverged sampler (a reconstruction-guidance weight too large, say) would write files
        # of NaN, or a report of NaN metrics: refused before `sample` or `evaluate` writes anything
        hint = ("lower --recon-guidance (sample.imputation_guidance)"
                if options.get("known") is not None and options.get("imputation_guidance") else
                "try more --steps or another --sampler")
        raise fail(f"{run.checkpoint}: the samples came out non-finite (NaN or inf), so nothing was "
                   f"written; {hint}")
    return x, layout, nfe


@contextmanager
def _out_of_memory_is_one_line(n: int) -> Iterator[None]:
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        raise fail(f"--n {n}: out of memory while sampling {n} at once (lower --n)") from None
    except RuntimeError as exc:
        if "alloc" not in str(exc) and "memory" not in str(exc):
            raise
        raise fail(f"--n {n}: cannot allocate memory for {n} samples at once (lower --n)") from None


def to_cpu(state: Any) -> Any:
    from polydiff.state import state_to

    return state_to(state, "cpu")
