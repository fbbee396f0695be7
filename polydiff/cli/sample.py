"""`polydiff sample`: draw samples from a trained run with any sampler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from polydiff.cli.common import console, err_console, fail, user_errors


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
        sc = cfg["sample"]
        sampler = sampler or sc["sampler"]
        try:
            get_sampler(sampler)
        except KeyError as exc:
            raise fail(str(exc.args[0])) from None
        steps = steps or int(sc["steps"])
        n = n or int(sc["n"])

        import torch

        from polydiff.checkpoint import check_compatible, load_weights
        from polydiff.generate import build_denoiser, generate
        from polydiff.progress import StepProgress
        from polydiff.train import (
            best_checkpoint,
            latest_checkpoint,
            plugin_distribution,
            resolve_device,
        )

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
            protocol_version=int(getattr(plugin, "protocol_version", 1)),
            distribution=dist_name,
            version=version,
        )
        denoiser = build_denoiser(plugin, cfg)
        denoiser.load_state_dict(model_sd if raw_weights or not ema_sd else ema_sd)
        denoiser.to(dev).eval()
        out_dir = out or run_dir / "samples" / f"{sampler}-{steps}"
        with torch.no_grad(), StepProgress(steps, f"sample ({sampler})", console=err_console) as bar:
            x, layout, nfe = generate(
                plugin,
                cfg,
                denoiser,
                n=n,
                sampler=sampler,
                steps=steps,
                schedule=schedule or str(sc["schedule"]),
                seed=int(sc["seed"]) if seed is None else seed,
                device=dev,
                callback=lambda i, x, d: bar.advance(),
            )

        def cpu(s):
            return None if s is None else ({k: v.cpu() for k, v in s.items()} if isinstance(s, dict) else s.cpu())

        written = plugin.write_samples(cpu(x), out_dir, mask=cpu(layout.mask), cond=layout.cond)
    console.print(f"[bold green]wrote[/] {len(written)} files to {out_dir} ({nfe} network evaluations)",
                  highlight=False)
    if written:
        console.print(f"  {written[0]}", highlight=False)
