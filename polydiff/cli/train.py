"""`polydiff train`: train a modality's default model (or your configuration) into a run folder."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from polydiff.cli.common import HeaderFirst, console, escape, fail, say, user_errors
from polydiff.config_schema import MAX_SEED


def _overrides(
    data: str | None,
    steps: int | None,
    batch_size: int | None,
    device: str | None,
    seed: int | None,
    precision: str | None = None,
    compile_: bool | None = None,
    processes: int | None = None,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"train": {}, "data": {}}
    if data is not None:
        out["data"]["path"] = data
    pairs = (
        ("steps", steps),
        ("batch_size", batch_size),
        ("device", device),
        ("seed", seed),
        ("precision", precision),
        ("compile", compile_),
        ("processes", processes),
    )
    for key, value in pairs:
        if value is not None:
            out["train"][key] = value
    return out


def _check_data(data: str | None, modality: Any) -> None:
    if data is None or data in tuple(getattr(modality, "builtin_datasets", ())):
        return
    if not Path(data).exists():
        builtin = ", ".join(getattr(modality, "builtin_datasets", ())) or "none"
        raise fail(f"--data {data}: no such file or directory (built-in datasets: {builtin})")


def train_command(
    modality: Annotated[
        str | None, typer.Option("--modality", "-m", help="Modality plugin, e.g. images.")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Your data (file or folder), or a built-in dataset name.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file overriding the defaults.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<modality>-<time>).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED, help="Random seed.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its last checkpoint.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto, fp32 or bf16 (autocast; auto = bf16 on CUDA only).")
    ] = None,
    compile_: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the network.")
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Skip unreadable data files (counted and named in the "
                     "summary) instead of stopping at the first."),
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(min=1, help="Data-parallel processes on this machine (train.processes; "
                     "capped by the cores, or the GPUs on CUDA)."),
    ] = None,
) -> None:
    """Train a diffusion model; writes config, checkpoints, metrics and samples to the run folder.

    Ctrl-C saves a checkpoint and exits (code 130); --resume continues exactly where it stopped.
    Launched by torchrun, the processes train one model data-parallel (see docs/training.md).
    """
    run_rank(dict(modality=modality, data=data, config=config, out=out, steps=steps,
                  batch_size=batch_size, device=device, seed=seed, resume=resume, precision=precision,
                  compile_=compile_, skip_bad=skip_bad, processes=processes))


def rank_main() -> None:
    """One rank started by ``--processes``: the parent's parameters and resolved configuration
    (:mod:`polydiff.cli.launch`), run under the rank's environment; exits with the rank's status."""
    import json
    import signal

    from polydiff.cli.launch import PARAMS_ENV

    # a rank started from a background shell job inherits an ignored SIGINT: the parent forwards
    # Ctrl-C, so honour it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    given = json.loads(os.environ.pop(PARAMS_ENV))
    params = given["params"]
    for key in ("config", "out", "resume"):
        if params.get(key) is not None:
            params[key] = Path(params[key])
    try:
        run_rank(params, given["resolved"])
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


def run_rank(params: dict[str, Any], resolved: dict[str, Any] | None = None) -> None:
    """The command with ``params`` (its keyword arguments); a rank started by ``--processes`` also
    gets the configuration its parent resolved and checked, and trains exactly that."""
    try:
        _train(**params, resolved=resolved)
    except BaseException:
        _cleanup(finished=False)
        raise
    _cleanup(finished=True)


def _cleanup(finished: bool) -> None:
    """Leave the process group; after a finished run all ranks leave together, since a rank whose
    gloo connections close while its peer still writes its last files was seen to abort at exit.
    (After a failure only this rank may be here: waiting for the others could hang.)"""
    if "torch" in sys.modules:
        from polydiff import distributed

        if finished and distributed.info().enabled:
            distributed.barrier()
        distributed.cleanup()


def _train(
    modality: str | None,
    data: str | None,
    config: Path | None,
    out: Path | None,
    steps: int | None,
    batch_size: int | None,
    device: str | None,
    seed: int | None,
    resume: Path | None,
    precision: str | None,
    compile_: bool | None,
    skip_bad: bool = False,
    processes: int | None = None,
    resolved: dict[str, Any] | None = None,
) -> None:
    main = os.environ.get("RANK", "0") == "0"
    with user_errors():
        from polydiff.cli.outputs import check_writable_folder
        from polydiff.cli.runs import check_sampler, open_record
        from polydiff.cli.tasks import check_device
        from polydiff.config import check_values
        from polydiff.registry import get_registry

        if resume is not None:
            from polydiff.distill import DISTILL_FILE

            if (resume / DISTILL_FILE).is_file():
                raise fail(f"{resume}: a distilled student; continue it with: polydiff distill {resume} --resume")
            cfg, name, plugin = open_record(resume)
            pairs = (("steps", steps), ("precision", precision), ("compile", compile_),
                     ("processes", processes))
            for key, value in pairs:
                if value is not None:
                    cfg["train"][key] = value
            if skip_bad:
                cfg.setdefault("data", {})["skip_bad"] = True
            check_values(cfg, f"--resume {resume}", plugin)
            run_dir = resume
        else:
            if modality is None:
                names = ", ".join(i.name for i in get_registry().infos() if i.status == "ok")
                raise fail(f"--modality is required; installed: {names or 'none'}")
            plugin = get_registry().load(modality)
            _check_data(data, plugin)
            from polydiff.config import resolve

            if data is not None and data in tuple(getattr(plugin, "builtin_datasets", ())):
                over = _overrides(None, steps, batch_size, device, seed, precision, compile_, processes)
                over["data"]["dataset"] = data
            else:
                over = _overrides(data, steps, batch_size, device, seed, precision, compile_, processes)
            if skip_bad:
                over["data"]["skip_bad"] = True
            # a rank started by --processes trains what its parent resolved: no second read
            cfg = resolved if resolved is not None else resolve(plugin, config, over)
            run_dir = out or Path("runs") / f"{plugin.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            check_writable_folder(run_dir, "--out")
        if resolved is not None:  # --resume under --processes: the parent's record
            cfg = resolved
        sc = cfg["sample"]
        source = f"--resume {resume}" if resume is not None else str(config or "config")
        check_sampler(str(sc["sampler"]), f"{source}: sample.sampler")
        if sc.get("inpaint_sampler"):
            check_sampler(str(sc["inpaint_sampler"]), f"{source}: sample.inpaint_sampler")
        check_device(str(cfg["train"]["device"]))

        from polydiff.cli.launch import launch, processes_for

        n = processes_for(cfg["train"])
        if n > 1:  # this process starts the ranks and waits; rank 0 reports
            params = {"modality": modality, "data": data, "config": config and str(config),
                      "out": None if resume is not None else str(run_dir), "steps": steps,
                      "batch_size": batch_size, "device": device, "seed": seed,
                      "resume": resume and str(resume), "precision": precision,
                      "compile_": compile_, "skip_bad": skip_bad, "processes": processes}
            code = launch(n, params, cfg)
            if code:
                raise typer.Exit(code)
            return

        from polydiff import distributed
        from polydiff.train import train
        from polydiff.training.outcomes import NonFiniteLossError, TrainingInterrupted
        from polydiff.training.run_folder import check_new_run, latest_checkpoint

        # under torchrun: join the group now so that every rank uses rank 0's run folder name
        distributed.setup(str(cfg["train"]["device"]), str(cfg["train"].get("dist_backend", "auto")))
        run_dir = Path(distributed.broadcast_object(str(run_dir)))
        if resume is None:
            check_new_run(run_dir)
        world = distributed.info().world_size
        how = f" on {world} processes" if world > 1 else ""
        verb = "resuming" if resume else "training"
        # printed with the first training output: a data error stays the only line
        header = f"{verb} [bold]{escape(plugin.name)}[/] in {escape(str(run_dir))}{how}"
        progress_console = HeaderFirst(header if main else "", stderr=True)
        try:
            result = train(plugin, cfg, run_dir, resume=resume is not None, console=progress_console)
        except TrainingInterrupted as exc:
            if main:
                say("[bold yellow]stopped:[/] {}", exc, err=True)
            raise typer.Exit(128 + exc.signum) from None
        except NonFiniteLossError as exc:
            if main:
                say("[bold red]error:[/] {}", exc, err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            last = latest_checkpoint(run_dir)
            where = f"last checkpoint: {last}" if last else "no checkpoint was written"
            if main:
                say("[bold yellow]aborted[/] ({})", where, err=True)
            raise typer.Exit(130) from None
    if main:
        _summary(result, cfg)


def _summary(result: Any, cfg: dict[str, Any]) -> None:
    """One screen: what was trained, how fast, and where everything went."""
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    minutes, seconds = divmod(result.wall_time, 60)
    table.add_row("steps", f"{result.steps} (batch {cfg['train']['batch_size']})")
    table.add_row("wall time", f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s")
    table.add_row("speed", f"{result.steps_per_s:.2f} steps/s, {result.samples_per_s:.0f} samples/s")
    table.add_row("final loss", f"{result.final_loss:.4f}")
    if result.best is not None:
        table.add_row("best loss", f"{result.best_loss:.4f} (smoothed)")
    if result.skipped:
        table.add_row("skipped", f"{result.skipped} non-finite steps")
    table.add_row("run folder", escape(str(result.run_dir)))
    table.add_row("checkpoint", escape(str(result.checkpoint)))
    if result.best is not None:
        table.add_row("best", escape(str(result.best)))
    if result.metrics is not None and result.metrics.exists():
        table.add_row("metrics", escape(str(result.metrics)))
    if result.plot is not None:
        table.add_row("loss curve", escape(str(result.plot)))
    if result.snapshots:
        n = len(result.snapshots)
        table.add_row("snapshots", escape(f"{result.snapshots[-1].parent} (latest of {n})"))
    if result.samples:
        table.add_row("samples", escape(str(result.samples[0])))
    from polydiff.files import skipped_summary

    skipped = skipped_summary()
    if skipped:
        table.add_row("data skipped", escape(skipped))
    console.print("[bold green]done[/]", highlight=False)
    console.print(table)
