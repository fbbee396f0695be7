"""`polydiff train`: train a modality's default model (or your configuration) into a run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from polydiff.cli.common import console, err_console, fail, user_errors


def _overrides(
    data: str | None, steps: int | None, batch_size: int | None, device: str | None, seed: int | None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"train": {}, "data": {}}
    if data is not None:
        out["data"]["path"] = data
    for key, value in (("steps", steps), ("batch_size", batch_size), ("device", device), ("seed", seed)):
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
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its last checkpoint.")
    ] = None,
) -> None:
    """Train a diffusion model; writes config, checkpoints, metrics and samples to the run folder."""
    with user_errors():
        from polydiff.registry import get_registry

        if resume is not None:
            record_path = resume / "config.json"
            if not record_path.is_file():
                raise fail(f"--resume {resume}: not a run folder (no config.json)")
            record = json.loads(record_path.read_text())
            name = record["modality"]
            plugin = get_registry().load(name)
            cfg = record["config"]
            if steps is not None:
                cfg["train"]["steps"] = steps
            run_dir = resume
        else:
            if modality is None:
                names = ", ".join(i.name for i in get_registry().infos() if i.status == "ok")
                raise fail(f"--modality is required; installed: {names or 'none'}")
            plugin = get_registry().load(modality)
            _check_data(data, plugin)
            from polydiff.config import resolve

            if data is not None and data in tuple(getattr(plugin, "builtin_datasets", ())):
                over = _overrides(None, steps, batch_size, device, seed)
                over["data"]["dataset"] = data
            else:
                over = _overrides(data, steps, batch_size, device, seed)
            cfg = resolve(plugin, config, over)
            run_dir = out or Path("runs") / f"{plugin.name}-{time.strftime('%Y%m%d-%H%M%S')}"

        from polydiff.train import latest_checkpoint, train

        if resume is None and latest_checkpoint(run_dir) is not None:
            raise fail(f"{run_dir}: already holds a training run (use --resume or another --out)")
        err_console.print(f"training [bold]{plugin.name}[/] into {run_dir}", highlight=False, soft_wrap=True)
        result = train(plugin, cfg, run_dir, resume=resume is not None, console=err_console)

    console.print(f"[bold green]done[/]: {result.steps} steps in {result.wall_time:.0f} s, "
                  f"final loss {result.final_loss:.4f}", highlight=False)
    console.print(f"  run folder   {result.run_dir}", highlight=False)
    console.print(f"  checkpoint   {result.checkpoint}", highlight=False)
    if (result.run_dir / "loss.png").exists():
        console.print(f"  loss curve   {result.run_dir / 'loss.png'}", highlight=False)
    if result.samples:
        console.print(f"  samples      {result.samples[0]}", highlight=False)
