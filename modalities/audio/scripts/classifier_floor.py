"""How far inaudible changes move the notes classifier's FID: the floor the field's table rests on.

    python modalities/audio/scripts/classifier_floor.py [--run RUN --n 64]
        [--from-sigma 0.002,0.01 [--no-samples]]

Prints the Fréchet distance to the default train split (512 clips) in the shipped classifier's
features for the default test split (128 clips) as it is, rounded to 16 bits, with white noise at
-90 ... -40 dBFS, and with the small departures a generator makes: every tone detuned by a few
cents (the same clips otherwise: same envelopes, timbres, phases), every onset delayed by a few
milliseconds, white noise only where a clip is silent; with ``--run``, also for ``--n`` samples of
that run (its configured sampler, seed 7, rounded to 16 bits as the WAV writer stores them)
against as many test clips. ``--from-sigma 0.005,0.1`` adds, for that run, where its FID comes
from: ``--n`` test clips noised to each level and brought back by the run's denoiser (Heun, 10
steps from the level to the run's ``sde.sigma_min``, then 0), with the RMS of what is left of
the noise and how much of it one denoiser call removes. The clips' pitch, envelope and timbre
survive a low level, so the FID there measures the denoiser's precision alone.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from polydiff_audio.classifier import CLASSIFIER_FORMAT, CLASSIFIER_PITCHES, load_notes_classifier
from polydiff_audio.notes import note_clip, notes_split

from polydiff import metrics as M

RATE = 16000


def _clips(split: str, n: int) -> torch.Tensor:
    return torch.from_numpy(notes_split(split, n, CLASSIFIER_PITCHES, RATE, RATE)[0])[:, None]


def _detuned(cents: float, n: int) -> torch.Tensor:
    """The test split's clips with every pitch moved by ``cents``: ``notes_split``'s draws, in order."""
    import numpy as np

    clips = [
        note_clip(CLASSIFIER_PITCHES[i % len(CLASSIFIER_PITCHES)] + cents / 100.0, RATE, RATE,
                  np.random.default_rng([1, i]))  # the test split's seed
        for i in range(n)
    ]
    return torch.from_numpy(np.stack(clips))[:, None]


def _delayed(x: torch.Tensor, ms: float) -> torch.Tensor:
    shift = round(ms * RATE / 1000)
    return torch.nn.functional.pad(x, (shift, 0))[..., : x.shape[-1]]


def _pcm16(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(-1.0, 1.0) * 32767) / 32767


def _opened(run: Path):
    """A run's resolved config, modality and denoiser, opened as ``polydiff sample`` opens one (its
    latest checkpoint's EMA weights, the version check, one-line errors for a folder that is not a
    run)."""
    from polydiff.cli.runs import load_denoiser, open_record

    cfg, _, plugin = open_record(run)
    return cfg, plugin, load_denoiser(run, plugin, cfg, device="cpu").denoiser


@torch.no_grad()
def _renoised(cfg, denoiser, clips: torch.Tensor, labels: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``clips`` noised to ``sigma``, then (one denoiser call, Heun from ``sigma`` down to 0)."""
    from polydiff.sampling.euler import sample_heun
    from polydiff.sampling.schedules import karras

    gen = torch.Generator().manual_seed(11)
    x = clips + sigma * torch.randn(clips.shape, generator=gen)
    one = denoiser(x, torch.full((len(x),), sigma), label=labels)
    grid = karras(float(cfg["sde"]["sigma_min"]), sigma, 10).float()
    return one, sample_heun(lambda y, s: denoiser(y, s, label=labels), x, grid)


def _levels(text: str) -> list[float]:
    """``--from-sigma``'s comma-separated noise levels; a one-line error and exit 2 for a bad one."""
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        levels = []
    if text.strip() and (not levels or any(not (v > 0 and math.isfinite(v)) for v in levels)):
        raise SystemExit(f"--from-sigma {text!r}: expected positive noise levels separated by commas")
    return levels


def _db(x: torch.Tensor) -> float:
    return 20 * torch.log10(x.pow(2).mean().sqrt()).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="also score samples of this notes run")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--from-sigma", default="", help="with --run: comma-separated noise levels to renoise test clips to")
    p.add_argument("--no-samples", action="store_true", help="with --run: skip sampling (the --from-sigma rows only)")
    a = p.parse_args()
    levels = _levels(a.from_sigma)  # before any sampling, so a typo costs nothing
    if levels and a.run is None:
        raise SystemExit("--from-sigma needs --run")
    torch.set_num_threads(1)
    samples = None
    if a.run is not None:  # first, so a folder that is not a run fails before any other work
        import typer

        from polydiff.cli.common import user_errors
        from polydiff.generate import generate

        try:
            with user_errors():
                cfg, plugin, denoiser = _opened(a.run)
                if not a.no_samples:
                    samples = generate(plugin, cfg, denoiser, n=a.n, sampler=cfg["sample"]["sampler"],
                                       steps=cfg["sample"]["steps"], seed=7)[0].float()
        except typer.Exit as stop:  # the one-line error is already printed
            raise SystemExit(stop.exit_code) from None
    clf = load_notes_classifier()
    train = clf.predict(_clips("train", 512))[0]
    test = _clips("test", 128)

    def fid(x: torch.Tensor) -> float:
        return M.frechet_distance(clf.predict(x)[0], train)

    gen = torch.Generator().manual_seed(0)
    rows = [("test, as generated", fid(test)), ("test, rounded to 16 bits", fid(_pcm16(test)))]
    for db in (-90, -80, -70, -60, -50, -40):
        noise = 10.0 ** (db / 20.0) * torch.randn(test.shape, generator=gen)
        rows.append((f"test + white noise at {db} dBFS", fid(test + noise)))
    silent = test.abs() < 1e-6
    for db in (-80, -60):
        noise = 10.0 ** (db / 20.0) * torch.randn(test.shape, generator=gen)
        rows.append((f"test + white noise at {db} dBFS where the clip is silent", fid(test + noise * silent)))
    for cents in (2, 5, 10, 25):
        rows.append((f"test, every tone {cents} cents sharp", fid(_detuned(cents, len(test)))))
    for ms in (2, 5, 10):
        rows.append((f"test, every onset {ms} ms later", fid(_delayed(test, ms))))
    if a.run is not None:
        rows.append((f"{a.n} test clips (16 bits)", fid(_pcm16(test[: a.n]))))
        if samples is not None:
            rows.append((f"{a.n} samples of {a.run} (16 bits)", fid(_pcm16(samples))))
        labels = torch.arange(a.n) % len(CLASSIFIER_PITCHES)  # notes_split's labels
        for level in levels:
            one, back = _renoised(cfg, denoiser, test[: a.n], labels, level)
            removed = 20 * math.log10(level) - _db(one - test[: a.n])
            rows.append((f"{a.n} test clips noised to sigma {level:g} and denoised ({_db(back - test[: a.n]):.1f} "
                         f"dBFS rms left; one call removes {removed:.1f} dB)", fid(_pcm16(back))))
    print(f"| clips | FID to the train split, classifier format {CLASSIFIER_FORMAT} |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
