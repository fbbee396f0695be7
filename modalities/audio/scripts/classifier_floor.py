"""How far inaudible changes move the notes classifier's FID: the floor the field's table rests on.

    python modalities/audio/scripts/classifier_floor.py [--run RUN --n 64]

Prints the Fréchet distance to the default train split (512 clips) in the shipped classifier's
features for the default test split (128 clips) as it is, rounded to 16 bits, and with white
noise at -90 ... -40 dBFS; with ``--run``, also for ``--n`` samples of that run (its configured
sampler, seed 7, rounded to 16 bits as the WAV writer stores them) against as many test clips.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from polydiff_audio.classifier import CLASSIFIER_FORMAT, CLASSIFIER_PITCHES, load_notes_classifier
from polydiff_audio.notes import notes_split

from polydiff import metrics as M

RATE = 16000


def _clips(split: str, n: int) -> torch.Tensor:
    return torch.from_numpy(notes_split(split, n, CLASSIFIER_PITCHES, RATE, RATE)[0])[:, None]


def _pcm16(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(-1.0, 1.0) * 32767) / 32767


def _samples(run: Path, n: int) -> torch.Tensor:
    """``n`` samples of a run, opened as ``polydiff sample`` opens one (its latest checkpoint's EMA
    weights, the version check, one-line errors for a folder that is not a run)."""
    from polydiff.cli.runs import load_denoiser, open_record
    from polydiff.generate import generate

    cfg, _, plugin = open_record(run)
    opened = load_denoiser(run, plugin, cfg, device="cpu")
    x, _, _ = generate(plugin, cfg, opened.denoiser, n=n, sampler=cfg["sample"]["sampler"],
                       steps=cfg["sample"]["steps"], seed=7)
    return x.float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="also score samples of this notes run")
    p.add_argument("--n", type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(1)
    samples = None
    if a.run is not None:  # first, so a folder that is not a run fails before any other work
        import typer

        from polydiff.cli.common import user_errors

        try:
            with user_errors():
                samples = _samples(a.run, a.n)
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
    if samples is not None:
        rows.append((f"{a.n} test clips (16 bits)", fid(_pcm16(test[: a.n]))))
        rows.append((f"{a.n} samples of {a.run} (16 bits)", fid(_pcm16(samples))))
    print(f"| clips | FID to the train split, classifier format {CLASSIFIER_FORMAT} |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
