"""`polydiff evaluate`: sample from a trained run and score the samples with the modality's metrics."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from polydiff.cli.common import console, fail, user_errors
from polydiff.cli.tasks import ClassOption, CondOption, GuidanceOption
from polydiff.config_schema import MAX_SAMPLE_STEPS, MAX_SAMPLES, MAX_SEED

DEFAULT_N = 500


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _slug(text: str) -> str:
    """A file-name-safe rendering of a ``--cond`` option."""
    import re

    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)[:40]


def _table(name: str, result: Mapping[str, Any]):
    from rich.table import Table

    from polydiff.metrics import REFERENCE_PREFIX

    keys = [k for k in result if not k.startswith(REFERENCE_PREFIX)]
    refs = {k[len(REFERENCE_PREFIX) :]: v for k, v in result.items() if k.startswith(REFERENCE_PREFIX)}
    table = Table(title=escape(name), title_justify="left")
    table.add_column("metric")
    table.add_column("samples", justify="right")
    if refs:
        table.add_column("real data", justify="right")
    for key in keys + [k for k in refs if k not in result]:
        row = [escape(key), escape(_fmt(result[key])) if key in result else ""]
        if refs:
            row.append(escape(_fmt(refs[key])) if key in refs else "")
        table.add_row(*row)
    return table


def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `polydiff train`.")],
    n: Annotated[int, typer.Option(min=2, max=MAX_SAMPLES, help="Number of samples to generate and score.")] = DEFAULT_N,
    sampler: Annotated[str | None, typer.Option(help="Sampler name (see `polydiff samplers`).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, max=MAX_SAMPLE_STEPS, help="Sampler steps.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Noise grid: karras, uniform, quadratic, logsnr, tuned.")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED, help="Random seed (default: the run's sample.seed).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    class_: ClassOption = None,
    cond: CondOption = None,
    guidance: GuidanceOption = None,
    features: Annotated[
        str | None,
        typer.Option(help="Feature extractor for the metrics: package.module:name or a "
                     "TorchScript file (default: the modality's own, e.g. a shipped classifier)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier report of the same settings.")
    ] = False,
) -> None:
    """Generate N samples from the run's latest checkpoint (EMA weights) and score them.

    Prints a table, with real data scored the same way where the modality provides it.

    Writes RUN_DIR/eval/<sampler>-<steps>.json (-2, -3 ... when an earlier report holds the name,
    unless --overwrite).
    """
    with user_errors():
        from polydiff.cli.outputs import check_writable_folder, fresh_file
        from polydiff.cli.runs import check_sampler, load_denoiser, open_record, sample_run, to_cpu
        from polydiff.cli.tasks import (
            LABEL,
            check_device,
            check_number,
            class_labels,
            network_classes,
            read_conditions,
        )
        from polydiff.hooks import call

        cfg, name, plugin = open_record(run_dir)
        check_number("--guidance", guidance, minimum=0.0)
        check_device(device)
        check_writable_folder(run_dir / "eval", "eval folder")
        if not call(plugin, "metrics"):
            raise fail(f"the {name} modality defines no metrics (its metrics() is empty); nothing to evaluate")
        sc = cfg["sample"]
        sampler = sampler or sc["sampler"]
        check_sampler(sampler)
        steps = steps or int(sc["steps"])
        seed = int(sc.get("seed", 0)) if seed is None else seed
        schedule = schedule or str(sc.get("schedule", "default"))
        from polydiff.cli.tasks import check_schedule

        check_schedule(schedule)
        guidance = float(sc.get("guidance", 1.0)) if guidance is None else guidance
        extractor = None
        if features:
            from polydiff.metrics import load_feature_extractor

            extractor = load_feature_extractor(features)  # a bad name fails before sampling

        from polydiff.checkpoint import atomic_write_text
        from polydiff.metrics import evaluate_samples

        run = load_denoiser(run_dir, plugin, cfg, device=device)
        cond_specs = list(cond or [])  # `cond` is reused below for the samples' conditions
        conditions = read_conditions(cond_specs, plugin, cfg, n)
        if class_ is not None and LABEL in conditions:
            raise fail("--class is shorthand for --cond label=...: give one of them")
        labels = class_labels(class_, plugin, network_classes(run), n)
        if labels is not None:
            conditions[LABEL] = labels
        options: dict[str, Any] = {"guidance": guidance}
        if conditions:
            options["cond"] = conditions
        ckpt, meta = run.checkpoint, run.meta
        t0 = time.perf_counter()
        from polydiff.tuning import schedule_options  # --schedule tuned: the run's own grid

        options.update(schedule_options(run_dir, schedule, sampler, steps))
        x, layout, nfe = sample_run(
            run, n=n, sampler=sampler, steps=steps, schedule=schedule, seed=seed, **options
        )
        t_sample = time.perf_counter() - t0

        cond = {k: to_cpu(v) if hasattr(v, "cpu") else v for k, v in layout.cond.items()}
        # score with the run's sampling seed as configured for this evaluation
        eval_cfg = {**cfg, "sample": {**sc, "seed": seed}, "eval": {"features": features, "extractor": extractor}}
        t0 = time.perf_counter()
        try:
            results = evaluate_samples(plugin, to_cpu(x), eval_cfg, mask=to_cpu(layout.mask), cond=cond)
        except ValueError as exc:
            raise fail(f"evaluating {run_dir}: {exc}") from None
        t_metrics = time.perf_counter() - t0

        task = "" if class_ is None else f"-class{class_.replace(',', '_')}"
        task += "".join(f"-{_slug(c)}" for c in cond_specs)
        task += "" if guidance == float(sc.get("guidance", 1.0)) else f"-w{guidance:g}"
        task += "-tuned" if schedule == "tuned" else ""
        out = fresh_file(run_dir / "eval" / f"{sampler}-{steps}{task}.json", overwrite=overwrite)
        report = {
            "run_dir": str(run_dir),
            "modality": name,
            "versions": meta.get("versions", {}),
            "checkpoint": ckpt.name,
            "step": meta.get("step"),
            "weights": run.weights,
            "sampler": sampler,
            "steps": steps,
            "schedule": schedule,
            "class": class_ or "data",
            "cond": cond_specs,
            "guidance": guidance,
            "n": n,
            "seed": seed,
            "nfe": nfe,
            "device": str(run.device),
            "seconds": {"sample": round(t_sample, 3), "metrics": round(t_metrics, 3)},
            "metrics": results,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")

    console.print(f"[bold]{escape(name)}[/]: {n} samples, {sampler} {steps} steps, {escape(ckpt.name)} "
                  f"(step {meta.get('step', '?')})", highlight=False, soft_wrap=True)
    for metric, result in results.items():
        console.print(_table(metric, result))
    console.print(f"[bold green]wrote[/] {escape(str(out))} ({nfe} network evaluations, "
                  f"{t_sample:.1f} s sampling, {t_metrics:.1f} s metrics)", highlight=False, soft_wrap=True)
