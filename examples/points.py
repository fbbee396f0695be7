"""Train the point transformer on the procedural shapes from Python, sample it, score the samples
with the PointFlow metrics and complete held-out shapes from one half.

    python examples/points.py --out runs/example-points            # the default run (~10 min)
    python examples/points.py --quick --out /tmp/points-quick      # seconds: tiny model, 64 points
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polydiff.checkpoint import load_weights
from polydiff.config import resolve
from polydiff.generate import build_denoiser, generate
from polydiff.registry import get_registry
from polydiff.train import train

QUICK = {
    "data": {"num_points": 64, "train_per_class": 4, "test_per_class": 2},
    "model": {"width": 16, "blocks": 1, "k": 8},
    # compile off: inductor's minute is repaid by a long run, not by three steps of a tiny model
    "train": {"steps": 3, "batch_size": 8, "snapshot_every": 0, "plot_every": 0, "device": "cpu", "compile": False},
    "sample": {"steps": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model for a smoke test")
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: the default)")
    parser.add_argument("--out", type=Path, default=Path("runs/example-points"))
    args = parser.parse_args()

    points = get_registry().load("points")
    overrides = QUICK if args.quick else {}
    if args.steps:
        overrides = {**overrides, "train": {**overrides.get("train", {}), "steps": args.steps}}
    config = resolve(points, overrides=overrides)
    result = train(points, config, args.out, sample_at_end=False)
    print(f"trained {result.steps} steps in {result.wall_time:.0f} s -> {result.checkpoint}")

    denoiser = build_denoiser(points, config)
    _, ema, _ = load_weights(result.checkpoint)
    denoiser.load_state_dict(ema)
    denoiser.eval()

    # unconditional samples, as many as the test split holds, scored the way PointFlow scores them
    from polydiff_points.evaluation import references

    refs, _, _ = references(config, 10**9)
    steps = int(config["sample"]["steps"])
    samples, layout, nfe = generate(points, config, denoiser, n=len(refs), sampler="heun", steps=steps)
    paths = points.write_samples(samples, args.out / "samples", mask=layout.mask)
    scores = points.metrics()["pointflow"](samples, config)
    print(f"{len(refs)} samples ({nfe} network calls) -> {paths[0]}")
    print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))

    # completion of held-out shapes from their x > 0 half, against mirroring that half
    from polydiff_points.completion import complete, half_space, mirror_baseline
    from polydiff_points.metrics import chamfer_pair

    clouds = refs[:8]
    known = half_space(clouds)
    sc = config["sample"]  # the configured RePaint rounds and reconstruction guidance
    ours = complete(points, config, denoiser, clouds, known, steps=steps,
                    resample=int(sc["imputation_resample"]), guidance=float(sc["imputation_guidance"]))
    mirror = mirror_baseline(clouds, known)
    cd_ours = float(chamfer_pair(ours, clouds).mean())
    cd_mirror = float(chamfer_pair(mirror, clouds).mean())
    paths = points.write_inpainting(ours, clouds, known, args.out / "completion")
    print(f"completion CD to the truth: model {cd_ours:.4g}, mirror baseline {cd_mirror:.4g} -> {paths[0]}")


if __name__ == "__main__":
    main()
