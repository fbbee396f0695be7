"""Train a class-conditional tone model from Python, sample it with two solvers, score the pitch
and the classifier FID / IS.

    python examples/audio.py                        # the 'quick' preset: 8 kHz, ~2-3 min on a CPU
    python examples/audio.py --steps 5 --quick-test # what the test suite runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polydiff_audio import PRESETS

from polydiff.checkpoint import load_weights
from polydiff.config import deep_merge, resolve
from polydiff.generate import build_denoiser, generate
from polydiff.registry import get_registry
from polydiff.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--out", type=Path, default=Path("runs/example-audio"))
    parser.add_argument("--quick-test", action="store_true", help="a tiny network and short clips")
    args = parser.parse_args()

    audio = get_registry().load("audio")
    overrides = PRESETS["quick"]
    if args.quick_test:  # seconds, not minutes: the suite checks that the script runs
        overrides = deep_merge(overrides, {
            "data": {"clip_seconds": 0.25, "train_crop": 0, "train_size": 16, "test_size": 8},
            "model": {"residual_layers": 3, "residual_channels": 8, "embedding_dim": 16},
            "train": {"batch_size": 4, "threads": 1},
        })
    if args.steps is not None:
        overrides = deep_merge(overrides, {"train": {"steps": args.steps}})
    config = resolve(audio, overrides=overrides)
    result = train(audio, config, args.out, sample_at_end=False)
    print(f"trained {result.steps} steps in {result.wall_time:.0f} s -> {result.checkpoint}")

    denoiser = build_denoiser(audio, config)
    denoiser.load_state_dict(load_weights(result.checkpoint)[1])  # the EMA weights
    denoiser.eval()
    metrics = audio.metrics()
    for sampler, steps in (("dpmpp_2m", 10), ("heun", 18)):
        x, layout, nfe = generate(audio, config, denoiser, n=8, sampler=sampler, steps=steps, seed=0)
        paths = audio.write_samples(x.cpu(), args.out / "samples" / sampler, cond=layout.cond,
                                    config=config)  # the run's sample rate
        cond = {k: v.cpu() for k, v in layout.cond.items()}
        scores = metrics["quality"](x.cpu(), config, cond=cond)
        # DiffWave's table in the shipped notes classifier; "reference/" is the test set's own row
        table = metrics["classifier"](x.cpu(), config, cond=cond)
        print(f"{sampler} ({nfe} NFE): {paths[0]}  pitch accuracy {scores['pitch_accuracy']:.2f}, "
              f"right pitch for the class {scores['label_accuracy']:.2f}, classifier FID {table['fid']:.2f} "
              f"(test set: {table['reference/fid']:.2f}), IS {table['is']:.2f} (test set: {table['reference/is']:.2f})")


if __name__ == "__main__":
    main()
