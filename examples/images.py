"""Train the digits model from Python, then sample it with two different solvers.

    python examples/images.py --steps 1800 --out runs/example-images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import polydiff
from polydiff.config import resolve
from polydiff.registry import get_registry
from polydiff.sde import build_sde
from polydiff.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--out", type=Path, default=Path("runs/example-images"))
    args = parser.parse_args()

    images = get_registry().load("images")
    config = resolve(images, overrides={"train": {"steps": args.steps}})
    result = train(images, config, args.out, sample_at_end=False)
    print(f"trained {result.steps} steps in {result.wall_time:.0f} s -> {result.checkpoint}")

    from polydiff.checkpoint import load_weights
    from polydiff.generate import build_denoiser

    denoiser = build_denoiser(images, config)
    _, ema, _ = load_weights(result.checkpoint)
    denoiser.load_state_dict(ema)
    denoiser.eval()
    sde = build_sde(config["sde"])
    noise = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for sampler, steps in (("dpmpp_2m", 10), ("heun", 18)):
        with torch.no_grad():
            x = polydiff.sample(denoiser, sde, noise=noise, sampler=sampler, steps=steps)
        paths = images.write_samples(x, args.out / "samples" / sampler)
        print(f"{sampler} ({steps} steps): {paths[0]}")


if __name__ == "__main__":
    main()
