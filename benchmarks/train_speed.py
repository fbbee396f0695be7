"""Training and sampling speed of a modality's default model through polydiff's own engine.

    python benchmarks/train_speed.py                          # images, CPU: fp32/bf16 x eager/compile
    python benchmarks/train_speed.py --modality toy --steps 50
    python benchmarks/train_speed.py --precision bf16 --compile on --sample-steps 20   # (gpu_check.sh)
    python benchmarks/train_speed.py --curve 200              # fp32 vs bf16 loss curves, same seed

For each combination of precision and torch.compile it builds the engine's Trainer on the
modality's default configuration, runs ``--warmup`` steps (compilation happens there), then times
``--steps`` optimizer steps and prints steps/s, samples/s and peak memory (CUDA: peak allocated;
CPU: the process's peak resident set). ``--sample-steps N`` also times an N-step sampling run of
``--sample-n`` samples with the modality's default sampler.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _load(name: str) -> Any:
    if name == "toy":  # the in-memory test modality, handy for timing the engine itself
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from toy_modality import ToyModality

        return ToyModality()
    from polydiff.registry import get_registry

    return get_registry().load(name)


def _config(modality: Any, args: argparse.Namespace, precision: str, compiled: bool) -> dict:
    from polydiff.config import resolve

    train = {
        "precision": precision,
        "compile": compiled,
        "device": args.device,
        "checkpoint_every": 0,
        "plot_every": 0,
        "snapshot_every": 0,
        "warmup_steps": 0 if args.curve == 0 else 100,
        "seed": args.seed,
    }
    if args.batch_size:
        train["batch_size"] = args.batch_size
    if args.channels_last != "auto":
        train["channels_last"] = args.channels_last == "on"
    return resolve(modality, overrides={"train": train})


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: Any) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(modality: Any, args: argparse.Namespace, precision: str, compiled: bool) -> dict:
    import torch

    from polydiff.generate import generate
    from polydiff.train import Trainer

    cfg = _config(modality, args, precision, compiled)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(modality, cfg, Path(tmp))
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        data = trainer._micro_batches()
        batches = [[next(data) for _ in range(trainer.grad_accum)] for _ in range(4)]

        def steps(n: int) -> list[float]:
            losses = []
            for i in range(n):
                losses.append(trainer.train_step(batches[i % len(batches)]))
            return losses

        t0 = time.perf_counter()
        steps(args.warmup)
        _sync(trainer.device)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        losses = steps(args.steps)
        _sync(trainer.device)
        elapsed = time.perf_counter() - t0
        row = {
            "modality": modality.name,
            "device": str(trainer.device),
            "precision": "bf16" if trainer.amp_dtype is not None else "fp32",
            "compile": compiled,
            "channels_last": trainer.channels_last,
            "batch": trainer.batch_size,
            "warmup_s": warm,
            "steps_s": args.steps / elapsed,
            "samples_s": args.steps * trainer.batch_size / elapsed,
            "final_loss": losses[-1] if losses else math.nan,
            "peak_mb": _peak_memory_mb(trainer.device),
        }
        if args.sample_steps > 0:
            sc = cfg["sample"]
            kwargs = dict(
                n=args.sample_n,
                sampler=str(sc["sampler"]),
                steps=args.sample_steps,
                schedule=str(sc["schedule"]),
                device=trainer.device,
            )
            generate(modality, cfg, trainer.ema, **{**kwargs, "steps": 2})  # warm-up
            _sync(trainer.device)
            t0 = time.perf_counter()
            _, _, nfe = generate(modality, cfg, trainer.ema, **kwargs)
            _sync(trainer.device)
            took = time.perf_counter() - t0
            row.update(
                sample_steps=args.sample_steps,
                nfe=nfe,
                sample_s=args.sample_n / took,
                peak_mb=_peak_memory_mb(trainer.device),
            )
    return row


def loss_curves(modality: Any, args: argparse.Namespace) -> None:
    """Train ``--curve`` steps in fp32 and in bf16 from the same seed on the same batches order."""
    from polydiff.train import Trainer

    curves = {}
    for precision in ("fp32", "bf16"):
        cfg = _config(modality, args, precision, False)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(modality, cfg, Path(tmp))
            data = trainer._micro_batches()
            t0 = time.perf_counter()
            losses = []
            for _ in range(args.curve):
                losses.append(trainer.train_step([next(data) for _ in range(trainer.grad_accum)]))
            curves[precision] = (losses, time.perf_counter() - t0)
    window = max(1, args.curve // 8)
    print(f"loss, mean over windows of {window} steps ({modality.name}, seed {args.seed})")
    print(f"{'steps':>11} {'fp32':>8} {'bf16':>8} {'rel diff':>9}")
    for start in range(0, args.curve, window):
        a = sum(curves["fp32"][0][start : start + window]) / window
        b = sum(curves["bf16"][0][start : start + window]) / window
        print(f"{start + 1:>5}-{start + window:<5} {a:8.4f} {b:8.4f} {abs(a - b) / a:9.2%}")
    for precision, (_, took) in curves.items():
        print(f"{precision}: {args.curve / took:.2f} steps/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--modality", default="images", help="a modality name, 'toy', or 'all'")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16, auto")
    ap.add_argument("--compile", default="off,on", help="comma-separated: off, on")
    ap.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--batch-size", type=int, default=0, help="default: the modality's")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    ap.add_argument("--sample-steps", type=int, default=0, help="also time N-step sampling")
    ap.add_argument("--sample-n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--curve", type=int, default=0, help="compare fp32 and bf16 loss curves")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.modality == "all":
        from polydiff.registry import get_registry

        names = [i.name for i in get_registry().infos() if i.status == "ok"]
    else:
        names = [args.modality]
    for name in names:
        modality = _load(name)
        if args.curve:
            loss_curves(modality, args)
            continue
        for precision in args.precision.split(","):
            for compiled in args.compile.split(","):
                row = measure(modality, args, precision.strip(), compiled.strip() == "on")
                if args.json:
                    print(json.dumps(row), flush=True)
                    continue
                line = (
                    f"{row['modality']:>8} {row['device']:>6} {row['precision']:>5} "
                    f"compile={'on ' if row['compile'] else 'off'} batch {row['batch']:>4}: "
                    f"{row['steps_s']:7.2f} steps/s {row['samples_s']:8.1f} samples/s "
                    f"peak {row['peak_mb']:7.0f} MB (warm-up {row['warmup_s']:.1f} s)"
                )
                if "sample_s" in row:
                    line += (
                        f"; sampling {row['sample_steps']} steps: {row['sample_s']:.1f} samples/s"
                    )
                print(line, flush=True)


if __name__ == "__main__":
    main()
