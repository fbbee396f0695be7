"""``notes``: deterministic clips of pitched tones, generated on the spot (nothing to download).

Clip ``i`` of a split plays pitch ``i mod len(pitches)`` (so the classes are balanced) with one of
four harmonic timbres, a random ADSR envelope, peak amplitude, onset and per-harmonic phases, all
drawn from a generator seeded by ``(split, i)``: the same clip every time, and the test split
never overlaps the train split. Partials above 0.45 × the sample rate are left out, so no timbre
aliases at 8 kHz.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["TIMBRES", "midi_to_hz", "note_clip", "notes_split"]


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _amplitudes(timbre: str, n: np.ndarray) -> np.ndarray:
    if timbre == "sine":
        return (n == 1).astype(np.float64)
    if timbre == "odd":  # clarinet-like: odd partials, 1/n
        return np.where(n % 2 == 1, 1.0 / n, 0.0)
    if timbre == "saw":  # bright: every partial, 1/n
        return 1.0 / n
    if timbre == "soft":  # mellow: 1/n²
        return 1.0 / n**2
    raise ValueError(f"unknown timbre {timbre!r}")


#: the harmonic spectra clips are drawn from
TIMBRES = ("sine", "odd", "saw", "soft")

_SPLIT_SEED = {"train": 0, "test": 1}


def _adsr(length: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    attack = rng.uniform(0.005, 0.08)
    decay = rng.uniform(0.05, 0.2)
    sustain = rng.uniform(0.4, 0.9)
    release = rng.uniform(0.05, 0.3)
    hold = rng.uniform(0.45, 0.75)  # key-down time, attack and decay included
    t = np.arange(length) / rate
    env = np.where(t < attack, t / attack, 1.0)
    env = np.where((t >= attack) & (t < attack + decay), 1.0 - (1.0 - sustain) * (t - attack) / decay, env)
    env = np.where(t >= attack + decay, sustain, env)
    off = max(hold, attack + decay)
    env = np.where(t >= off, sustain * np.clip(1.0 - (t - off) / release, 0.0, 1.0), env)
    return env


def note_clip(
    midi: float, rate: int, length: int, rng: np.random.Generator, timbre: str | None = None
) -> np.ndarray:
    """One tone of ``length`` samples: harmonic partials, ADSR envelope, random peak in [0.3, 0.9]."""
    f0 = float(midi_to_hz(midi))
    timbre = timbre or TIMBRES[int(rng.integers(len(TIMBRES)))]
    n = np.arange(1, max(1, int(0.45 * rate / f0)) + 1)
    amps = _amplitudes(timbre, n)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=len(n))
    onset = int(rng.uniform(0.0, 0.05) * rate)
    t = np.arange(length - onset) / rate
    tone = (amps[:, None] * np.sin(2.0 * np.pi * f0 * n[:, None] * t[None] + phases[:, None])).sum(0)
    tone *= _adsr(len(t), rate, rng)
    peak = np.abs(tone).max()
    out = np.zeros(length)
    if peak > 0:
        out[onset:] = tone / peak * rng.uniform(0.3, 0.9)
    return out.astype(np.float32)


def notes_split(
    split: str, size: int, pitches: Sequence[float], rate: int, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(size, length)`` float32 clips and their ``(size,)`` pitch-class labels for ``split``."""
    clips = np.empty((size, length), dtype=np.float32)
    labels = np.arange(size) % len(pitches)
    for i in range(size):
        rng = np.random.default_rng([_SPLIT_SEED[split], i])
        clips[i] = note_clip(float(pitches[labels[i]]), rate, length, rng)
    return clips, labels.astype(np.int64)
