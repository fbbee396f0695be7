"""`polydiff schedule`: tune a sampler's noise levels to a trained run (no training), stored in the
run folder for `polydiff sample|evaluate RUN --schedule tuned`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polydiff.cli.common import console, user_errors
from polydiff.cli.tasks import GuidanceOption


def schedule_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `polydiff train`.")],
    sampler: Annotated[
        str | None, typer.Option(help="A deterministic sampler (default: the run's).")
    ] = None,
    nfe: Annotated[
        int | None, typer.Option(min=1, help="Network evaluations per sample (sets --steps).")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Nonzero noise levels.")] = None,
    n: Annotated[int, typer.Option(min=1, help="Calibration batch size.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the calibration noise.")] = 0,
    reference_steps: Annotated[
        int, typer.Option(min=2, help="Steps of the fine dpmpp_3m solution tuned against.")
    ] = 100,
    max_evals: Annotated[
        int, typer.Option(min=1, help="Sampling runs the search may spend from each of its two starting grids.")
    ] = 100,
    guidance: GuidanceOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Tune the noise levels of SAMPLER at NFE network evaluations to this run's model: the grid
    whose samples lie closest to a fine-step ODE solution from the same noise (calibration batch),
    checked on a held-out batch. Writes RUN_DIR/schedules.json."""
    with user_errors():
        from polydiff.cli.common import fail
        from polydiff.cli.runs import check_sampler, load_denoiser, open_record
        from polydiff.cli.tasks import check_device, check_number
        from polydiff.sde import build_sde
        from polydiff.tuning import save_schedule, steps_for_nfe, tune_modality

        if nfe is not None and steps is not None:
            raise fail("give --nfe or --steps, not both")
        check_number("--guidance", guidance, minimum=0.0)
        check_device(device)
        cfg, name, plugin = open_record(run_dir)
        sampler = sampler or str(cfg["sample"]["sampler"])
        check_sampler(sampler)
        sde = build_sde(cfg["sde"])
        if steps is None:
            steps = steps_for_nfe(sampler, nfe, sde) if nfe is not None else int(cfg["sample"]["steps"])
        run = load_denoiser(run_dir, plugin, cfg, device=device)
        result = tune_modality(
            plugin, cfg, run.denoiser, sampler=sampler, steps=steps, n=n, seed=seed,
            holdout_seed=seed + 1, device=run.device, guidance=guidance,
            reference_steps=reference_steps, max_evals=max_evals,
        )
        path = save_schedule(
            run_dir, result, checkpoint=run.checkpoint.name, step=run.meta.get("step"),
            guidance=guidance,
        )
    console.print(
        f"[bold]{sampler}[/] at {steps} steps ({result.nfe} NFE): RMS distance to the "
        f"{reference_steps}-step solution {result.default_error:.4g} -> {result.error:.4g} "
        f"(held-out batch {result.default_holdout_error:.4g} -> {result.holdout_error:.4g}), "
        f"{result.evaluations} sampling runs, {result.seconds:.1f} s",
        highlight=False, soft_wrap=True,
    )
    console.print("  sigmas: " + ", ".join(f"{s:.4g}" for s in result.sigmas), highlight=False)
    console.print(f"[bold green]wrote[/] {path} (use: polydiff sample {run_dir} --sampler {sampler} "
                  f"--steps {steps} --schedule tuned)", highlight=False, soft_wrap=True)
