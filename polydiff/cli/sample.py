"""`polydiff sample`: draw samples from a trained run with any sampler, class-conditional or
guided, or inpaint a user's input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from polydiff.cli.common import console, user_errors
from polydiff.cli.tasks import ClassOption, CondOption, GuidanceOption
from polydiff.config_schema import MAX_SAMPLE_STEPS, MAX_SAMPLES, MAX_SEED


def sample_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `polydiff train`.")],
    n: Annotated[int | None, typer.Option(min=1, max=MAX_SAMPLES, help="Number of samples.")] = None,
    sampler: Annotated[str | None, typer.Option(help="Sampler name (see `polydiff samplers`).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, max=MAX_SAMPLE_STEPS, help="Sampler steps.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Noise grid: karras, uniform, quadratic, logsnr.")
    ] = None,
    class_: ClassOption = None,
    cond: CondOption = None,
    guidance: GuidanceOption = None,
    inpaint: Annotated[
        Path | None, typer.Option(help="Inpaint this input file (needs --mask).")
    ] = None,
    mask: Annotated[
        str | None,
        typer.Option(help="Inpainting mask: a file (white = generate) or a preset of the modality "
                     "(images: left, right, top, bottom, center, border)."),
    ] = None,
    resample: Annotated[
        int | None, typer.Option(min=1, help="RePaint rounds per step when inpainting.")
    ] = None,
    recon_guidance: Annotated[
        float | None,
        typer.Option("--recon-guidance", min=0.0,
                     help="Reconstruction-guidance weight when inpainting (0: replacement only)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default RUN_DIR/samples/<sampler>-<steps>, numbered "
                     "-2, -3 ... when taken); refused when it already holds files."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Empty the output folder first when it holds files.")
    ] = False,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED, help="Random seed.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    checkpoint: Annotated[
        str, typer.Option(help="Which checkpoint: latest or best (lowest smoothed training loss).")
    ] = "latest",
    raw_weights: Annotated[
        bool, typer.Option("--no-ema", help="Use the raw weights instead of the EMA weights.")
    ] = False,
) -> None:
    """Sample from a trained model and write the results with the modality's writer.

    Earlier outputs are never mixed with new ones: the default folder gets a fresh numbered name
    when taken, and an explicit --out that holds files is refused unless --overwrite.
    """
    with user_errors():
        from polydiff.cli.common import fail
        from polydiff.cli.outputs import check_writable_folder, claim_output_folder
        from polydiff.cli.runs import check_sampler, load_denoiser, open_record, sample_run, to_cpu
        from polydiff.cli.tasks import (
            LABEL,
            check_device,
            check_number,
            check_schedule,
            class_labels,
            inpainting_inputs,
            network_classes,
            read_conditions,
        )
        from polydiff.hooks import call
        from polydiff.state import state_to

        cfg, name, plugin = open_record(run_dir)
        sc = cfg["sample"]
        check_number("--guidance", guidance, minimum=0.0)
        check_device(device)
        check_number("--recon-guidance", recon_guidance, minimum=0.0)
        if schedule is not None:
            check_schedule(schedule)
        if out is not None:
            check_writable_folder(out, "--out")
        task_sampler = (sc.get("inpaint_sampler") if inpaint is not None else "") or sc["sampler"]
        task_steps = (sc.get("inpaint_steps") if inpaint is not None else 0) or sc["steps"]
        sampler = sampler or task_sampler
        check_sampler(sampler)
        steps = steps or int(task_steps)
        n = n or int(sc["n"])
        if mask is not None and inpaint is None:
            raise fail("--mask needs --inpaint IMAGE")
        known = None if inpaint is None else inpainting_inputs(inpaint, mask, plugin, cfg, n)

        run = load_denoiser(
            run_dir, plugin, cfg, checkpoint=checkpoint, device=device, ema=not raw_weights
        )
        conditions = read_conditions(cond, plugin, cfg, n)
        if class_ is not None and LABEL in conditions:
            raise fail("--class is shorthand for --cond label=...: give one of them")
        labels = class_labels(class_, plugin, network_classes(run), n)
        if labels is not None:
            conditions[LABEL] = labels
        if known is not None:
            # the conditions of an input to complete are unknown (its class, its mel): the
            # unconditional model for every condition not given, never a random training item's
            for name in getattr(plugin, "conditions", ()) or ():
                conditions.setdefault(name, None)
        options = {"guidance": guidance}
        if conditions:
            options["cond"] = conditions
        if known is not None:
            options["known"] = tuple(state_to(t, run.device) for t in known)
            options["imputation_resample"] = int(resample or sc.get("imputation_resample", 1))
            options["imputation_guidance"] = float(
                sc.get("imputation_guidance", 0.0) if recon_guidance is None else recon_guidance
            )
        task = "inpaint" if known is not None else sampler
        # checked (and with --overwrite emptied) once every input has been read, before sampling
        out_dir, note = claim_output_folder(
            out, run_dir / "samples" / f"{task}-{steps}", overwrite=overwrite
        )
        from polydiff.tuning import schedule_options  # --schedule tuned: the run's own grid

        options.update(schedule_options(run_dir, schedule or str(sc["schedule"]), sampler, steps))
        x, layout, nfe = sample_run(
            run,
            n=n,
            sampler=sampler,
            steps=steps,
            schedule=schedule or str(sc["schedule"]),
            seed=int(sc["seed"]) if seed is None else seed,
            **options,
        )
        if known is not None:
            written = call(plugin, "write_inpainting", to_cpu(x), to_cpu(known[0]),
                           to_cpu(known[1]), out_dir, config=cfg)
        else:
            written = call(
                plugin, "write_samples", to_cpu(x), out_dir, mask=to_cpu(layout.mask), config=cfg,
                cond={k: to_cpu(v) if hasattr(v, "cpu") else v for k, v in layout.cond.items()},
            )
    if note:
        console.print(f"[yellow]note:[/] {escape(note)}; wrote to a new folder", highlight=False,
                      soft_wrap=True)
    console.print(f"[bold green]wrote[/] {len(written)} files to {escape(str(out_dir))} "
                  f"({nfe} network evaluations)", highlight=False, soft_wrap=True)
    if written:
        console.print(f"  {escape(str(written[0]))}", highlight=False, soft_wrap=True)

