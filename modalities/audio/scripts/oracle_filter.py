"""How much white noise the best linear filter of a WaveNet's receptive field can remove from notes.

    python modalities/audio/scripts/oracle_filter.py [--taps 541 --clips 16 --sigma 0.002,0.01,0.05]

For each of the first ``--clips`` test clips (16 kHz, one second) and each noise level, the
``--taps``-tap filter centred on each sample is fitted by least squares to map the noisy clip to
the clean one: an oracle, since it sees the clean clip, that bounds what a linear filter as long as
the receptive field can do on that clip. Prints the median (and range) of the noise removed, in
dB. The default 541 taps is the default WaveNet's receptive field (``polydiff_audio.wavenet``).
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from polydiff_audio.classifier import CLASSIFIER_PITCHES
from polydiff_audio.notes import notes_split


def removed_db(clean: np.ndarray, sigma: float, taps: int, rng: np.random.Generator) -> float:
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    windows = sliding_window_view(np.pad(noisy, (taps // 2, taps - 1 - taps // 2)), taps)
    fit, *_ = np.linalg.lstsq(windows, clean, rcond=None)
    left = np.sqrt(np.mean((windows @ fit - clean) ** 2))
    return float(20 * np.log10(sigma / left))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taps", type=int, default=541)
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--sigma", default="0.002,0.01,0.05")
    a = p.parse_args()
    clips = notes_split("test", a.clips, CLASSIFIER_PITCHES, 16000, 16000)[0].astype(np.float64)
    rng = np.random.default_rng(0)
    print(f"| sigma | noise removed by the best {a.taps}-tap filter, median of {a.clips} clips (range) |\n|---|---|")
    for sigma in (float(v) for v in a.sigma.split(",")):
        gains = [removed_db(c, sigma, a.taps, rng) for c in clips]
        print(f"| {sigma:g} | {np.median(gains):.1f} dB ({min(gains):.1f} to {max(gains):.1f}) |")


if __name__ == "__main__":
    main()
