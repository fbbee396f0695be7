"""`polydiff evaluate`: sample from a trained run and score the samples with the modality's metrics."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from polydiff.cli.common import console, err_console, fail, user_errors

DEFAULT_N = 500


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _table(name: str, result: Mapping[str, Any]):
    from rich.table import Table

    from polydiff.metrics import REFERENCE_PREFIX

    keys = [k for k in result if not k.startswith(REFERENCE_PREFIX)]
    refs = {k[len(REFERENCE_PREFIX) :]: v for k, v in result.items() if k.startswith(REFERENCE_PREFIX)}
    table = Table(title=name, title_justify="left")
    table.add_column("metric")
    table.add_column("samples", justify="right")
    if refs:
        table.add_column("real data", justify="right")
    for key in keys + [k for k in refs if k not in result]:
        row = [key, _fmt(result[key]) if key in result else ""]
        if refs:
            row.append(_fmt(refs[key]) if key in refs else "")
        table.add_row(*row)
    return table


def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `polydiff train`.")],
    n: Annotated[int, typer.Option(min=2, help="Number of samples to generate and score.")] = DEFAULT_N,
    sampler: Annotated[str | None, typer.Option(help="Sampler name (see `polydiff samplers`).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampler steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the run's sample.seed).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Generate N samples from the run's latest checkpoint (EMA weights) and score them.

    Prints a table, with real data scored the same way where the modality provides it.

    Writes RUN_DIR/eval/<sampler>-<steps>.json.
    """
    with user_errors():
        record_path = run_dir / "config.json"
        if not record_path.is_file():
            raise fail(f"{run_dir}: not a run folder (no config.json)")
        try:
            record = json.loads(record_path.read_text())
            cfg, name = record["config"], record["modality"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise fail(f"{record_path}: unreadable run record ({exc})") from None

        from polydiff.registry import get_registry
        from polydiff.sampling import get_sampler

        plugin = get_registry().load(name)
        get_metrics = getattr(plugin, "metrics", None)
        if not callable(get_metrics) or not get_metrics():
            raise fail(f"the {name} modality defines no metrics (its metrics() is empty); nothing to evaluate")
        sc = cfg["sample"]
        sampler = sampler or sc["sampler"]
        try:
            get_sampler(sampler)
        except KeyError as exc:
            raise fail(str(exc.args[0])) from None
        steps = steps or int(sc["steps"])
        seed = int(sc.get("seed", 0)) if seed is None else seed
        schedule = str(sc.get("schedule", "default"))

        import torch

        from polydiff.checkpoint import atomic_write_text, check_compatible, load_weights
        from polydiff.generate import build_denoiser, generate
        from polydiff.metrics import evaluate_samples
        from polydiff.progress import StepProgress
        from polydiff.train import latest_checkpoint, plugin_distribution, resolve_device

        ckpt = latest_checkpoint(run_dir)
        if ckpt is None or not ckpt.exists():
            raise fail(f"{run_dir}: no checkpoint found")
        dev = resolve_device(device)
        model_sd, ema_sd, meta = load_weights(ckpt)
        dist_name, version = plugin_distribution(plugin)
        check_compatible(
            meta,
            ckpt,
            protocol_version=int(getattr(plugin, "protocol_version", 1)),
            distribution=dist_name,
            version=version,
        )
        denoiser = build_denoiser(plugin, cfg)
        denoiser.load_state_dict(ema_sd or model_sd)
        denoiser.to(dev).eval()
        t0 = time.perf_counter()
        with torch.no_grad(), StepProgress(steps, f"sample ({sampler})", console=err_console) as bar:
            x, layout, nfe = generate(
                plugin,
                cfg,
                denoiser,
                n=n,
                sampler=sampler,
                steps=steps,
                schedule=schedule,
                seed=seed,
                device=dev,
                callback=lambda i, x, d: bar.advance(),
            )
        t_sample = time.perf_counter() - t0

        def cpu(s):
            if s is None:
                return None
            return {k: v.cpu() for k, v in s.items()} if isinstance(s, dict) else s.cpu()

        cond = {k: cpu(v) if hasattr(v, "cpu") else v for k, v in layout.cond.items()}
        # score with the run's sampling seed as configured for this evaluation
        eval_cfg = {**cfg, "sample": {**sc, "seed": seed}}
        t0 = time.perf_counter()
        try:
            results = evaluate_samples(plugin, cpu(x), eval_cfg, mask=cpu(layout.mask), cond=cond)
        except ValueError as exc:
            raise fail(f"evaluating {run_dir}: {exc}") from None
        t_metrics = time.perf_counter() - t0

        out = run_dir / "eval" / f"{sampler}-{steps}.json"
        report = {
            "run_dir": str(run_dir),
            "modality": name,
            "versions": record.get("versions", {}),
            "checkpoint": ckpt.name,
            "step": meta.get("step"),
            "weights": "ema" if ema_sd else "raw",
            "sampler": sampler,
            "steps": steps,
            "schedule": schedule,
            "n": n,
            "seed": seed,
            "nfe": nfe,
            "device": str(dev),
            "seconds": {"sample": round(t_sample, 3), "metrics": round(t_metrics, 3)},
            "metrics": results,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")

    console.print(f"[bold]{name}[/]: {n} samples, {sampler} {steps} steps, {ckpt.name} "
                  f"(step {meta.get('step', '?')})", highlight=False, soft_wrap=True)
    for metric, result in results.items():
        console.print(_table(metric, result))
    console.print(f"[bold green]wrote[/] {out} ({nfe} network evaluations, "
                  f"{t_sample:.1f} s sampling, {t_metrics:.1f} s metrics)", highlight=False, soft_wrap=True)
