"""`polydiff sample`: draw samples from a trained run with any sampler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polydiff.cli.common import console, user_errors


def sample_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `polydiff train`.")],
    n: Annotated[int | None, typer.Option(min=1, help="Number of samples.")] = None,
    sampler: Annotated[str | None, typer.Option(help="Sampler name (see `polydiff samplers`).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampler steps.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Noise grid: karras, uniform, quadratic, logsnr.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN_DIR/samples/...).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    checkpoint: Annotated[
        str, typer.Option(help="Which checkpoint: latest or best (lowest smoothed training loss).")
    ] = "latest",
    raw_weights: Annotated[
        bool, typer.Option("--no-ema", help="Use the raw weights instead of the EMA weights.")
    ] = False,
) -> None:
    """Sample from a trained model and write the results with the modality's writer."""
    with user_errors():
        from polydiff.cli.runs import check_sampler, load_denoiser, read_record, sample_run, to_cpu
        from polydiff.registry import get_registry

        cfg, name = read_record(run_dir)
        plugin = get_registry().load(name)
        sc = cfg["sample"]
        sampler = sampler or sc["sampler"]
        check_sampler(sampler)
        steps = steps or int(sc["steps"])
        n = n or int(sc["n"])


        run = load_denoiser(
            run_dir, plugin, cfg, checkpoint=checkpoint, device=device, ema=not raw_weights
        )
        out_dir = out or run_dir / "samples" / f"{sampler}-{steps}"
        x, layout, nfe = sample_run(
            run,
            n=n,
            sampler=sampler,
            steps=steps,
            schedule=schedule or str(sc["schedule"]),
            seed=int(sc["seed"]) if seed is None else seed,
        )
        written = plugin.write_samples(to_cpu(x), out_dir, mask=to_cpu(layout.mask), cond=layout.cond)
    console.print(f"[bold green]wrote[/] {len(written)} files to {out_dir} ({nfe} network evaluations)",
                  highlight=False)
    if written:
        console.print(f"  {written[0]}", highlight=False)
