"""Sampler bookkeeping overhead: a 20-step dpmpp_2m run with an identity denoiser.

The state is a 64 x 3 x 32 x 32 batch; the identity denoiser costs nothing, so the time is the
sampler's own (state updates, packing, NFE counting, coefficients) against the bare minimum of the
same number of tensor passes.

    python benchmarks/overhead.py
"""

from __future__ import annotations

import time

import torch

from polydiff.sampling import run_sampler
from polydiff.sde import EDM


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_overhead(steps: int = 20, shape=(64, 3, 32, 32), repeats: int = 7) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: stable timings on a shared machine
    try:
        return _measure(steps, shape, repeats)
    finally:
        torch.set_num_threads(threads)


def _measure(steps, shape, repeats) -> dict:
    sde = EDM()
    noise = torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    def identity(x, sigma, **_):
        return x

    def full():
        run_sampler(identity, sde, noise=noise, sampler="dpmpp_2m", steps=steps)

    def floor():
        # the unavoidable work: the prior draw and one fused multiply-add per step (a first-order
        # update x' = a x + b D) on a state of this size
        x = noise * sde.sigma_max
        sig = torch.ones(noise.shape[0])
        for _ in range(steps):
            x = (x * 0.9).add_(identity(x, sig), alpha=0.1)
        return x

    full()  # warm up
    t_full = _best_of(full, repeats)
    t_floor = _best_of(floor, repeats)
    per_step = (t_full - t_floor) / steps
    text = (
        f"overhead: dpmpp_2m, {steps} steps, state {tuple(shape)}, identity denoiser: "
        f"{1e3 * t_full:.2f} ms per run ({1e3 * t_full / steps:.3f} ms per step); "
        f"bare first-order loop {1e3 * t_floor:.2f} ms; bookkeeping {1e3 * per_step:.3f} ms per step"
    )
    markdown = (
        f"A {steps}-step `dpmpp_2m` run through `run_sampler` with an identity denoiser on a "
        f"{'×'.join(map(str, shape))} float32 batch (CPU, one thread, best of {repeats}): "
        f"**{1e3 * t_full:.2f} ms** per run, {1e3 * t_full / steps:.3f} ms per step, against "
        f"{1e3 * t_floor:.2f} ms for a bare loop of one fused multiply-add per step — "
        f"{1e3 * per_step:.3f} ms per step of sampler bookkeeping (state arithmetic of the "
        "multistep update, packing, NFE counting). Coefficients are Python floats computed "
        "once per step from one `tolist()` of the grid, so no step synchronises with the device."
    )
    return {"full_s": t_full, "floor_s": t_floor, "text": text, "markdown": markdown}


def measure_against_unet(steps: int = 20, shape=(64, 3, 32, 32), repeats: int = 3) -> dict:
    """The sampler's whole run (identity denoiser) against ``steps`` forward passes of the default
    image U-Net on the same batch, in one process, one thread."""
    from polydiff_images import modality

    from polydiff.config import resolve
    from polydiff.generate import build_denoiser

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = resolve(modality)
        cfg["data"]["channels"] = shape[1]
        net = build_denoiser(modality, cfg).eval()
        x = torch.randn(*shape)
        sigma = torch.full((shape[0],), 1.0)

        def unet_passes():
            with torch.no_grad():
                for _ in range(steps):
                    net(x, sigma)

        unet_passes()
        t_unet = _best_of(unet_passes, repeats)
        t_sampler = _measure(steps, shape, 7)["full_s"]
    finally:
        torch.set_num_threads(threads)
    ratio = t_sampler / t_unet
    text = (
        f"{steps}-step dpmpp_2m with an identity denoiser: {1e3 * t_sampler:.1f} ms; "
        f"{steps} forward passes of the default image U-Net: {1e3 * t_unet:.0f} ms; "
        f"ratio {100 * ratio:.2f}%"
    )
    return {"sampler_s": t_sampler, "unet_s": t_unet, "ratio": ratio, "text": text}


if __name__ == "__main__":
    print(measure_overhead()["text"])
    try:
        print(measure_against_unet()["text"])
    except ImportError:
        print("polydiff-images is not installed: skipping the U-Net comparison")
