"""`polydiff distill`: progressive (default) or consistency distillation of a trained run into a
student run folder that samples in K network evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polydiff.cli.common import say, user_errors
from polydiff.cli.tasks import GuidanceOption


def distill_command(
    run_dir: Annotated[
        Path,
        typer.Argument(help="The teacher's run folder (with --resume: the student's to continue)."),
    ],
    nfe: Annotated[int, typer.Option(min=1, help="Network evaluations of the student (1, 2, 4 ...).")] = 4,
    out: Annotated[Path | None, typer.Option(help="The student's new run folder.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the distillation in RUN_DIR.")] = False,
    steps_per_round: Annotated[
        int, typer.Option(min=1, help="Training steps of each halving round.")
    ] = 200,
    base_levels: Annotated[
        int, typer.Option(min=2, help="DDIM levels of the first teacher (rounds halve from there).")
    ] = 24,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Learning rate (default: the teacher's).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the teacher's).")] = None,
    guidance: GuidanceOption = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: the teacher's).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the teacher's).")] = None,
    method: Annotated[
        str,
        typer.Option(help="progressive (Salimans & Ho 2022) or consistency (Song et al. 2023; "
                     "--steps-per-round is then its whole run)."),
    ] = "progressive",
) -> None:
    """Train a student that samples in NFE network evaluations (progressive distillation, Salimans &
    Ho 2022; or consistency distillation, Song et al. 2023, with --method consistency): an ordinary
    run folder (`polydiff sample`, `evaluate`, `distill --resume`) built from the teacher's own
    network; a guided teacher is distilled with its guidance."""
    with user_errors():
        from polydiff.cli.common import fail
        from polydiff.cli.outputs import check_writable_folder
        from polydiff.cli.runs import open_record
        from polydiff.cli.tasks import check_device, check_number
        from polydiff.distill import METHODS, distill
        from polydiff.training.outcomes import NonFiniteLossError, TrainingInterrupted

        if method not in METHODS:
            raise fail(f"--method {method}: choose one of {', '.join(METHODS)}")
        if resume and out is not None:
            raise fail("--resume continues RUN_DIR itself: drop --out")
        if not resume and out is None:
            raise fail("--out NEW names the student's run folder")
        if out is not None:
            check_writable_folder(out, "--out")
        check_number("--guidance", guidance, minimum=0.0)
        if device is not None:
            check_device(device)
        _, _, plugin = open_record(run_dir)  # the teacher's (or student's) record, values checked
        student_dir = run_dir if resume else out
        try:
            result = distill(
                plugin, None if resume else run_dir, student_dir, k=nfe,
                steps_per_round=steps_per_round, base_levels=base_levels, guidance=guidance,
                lr=lr, batch_size=batch_size, seed=seed, device=device, resume=resume,
                method=method,
            )
        except TrainingInterrupted as exc:
            say("[bold yellow]stopped:[/] {}", exc, err=True)
            raise typer.Exit(128 + exc.signum) from None
        except NonFiniteLossError as exc:
            say("[bold red]error:[/] {}", exc, err=True)
            raise typer.Exit(1) from None
    say(
        "[bold green]distilled[/] {} steps in {} s, final loss {}; student: {} "
        "(sample with: polydiff sample {})",
        result.steps, f"{result.wall_time:.1f}", f"{result.final_loss:.4g}", student_dir, student_dir,
    )
