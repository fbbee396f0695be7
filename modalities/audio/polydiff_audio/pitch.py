"""Fundamental-frequency estimates (YIN, de Cheveigné & Kawahara 2002) and the pitch metrics.

One f0 per clip: YIN's cumulative-mean-normalised difference function over a few frames around
the clip's loudest part, averaged; the first dip below the threshold (steps 3–4 of the paper),
refined by parabolic interpolation (step 5). A clip whose best dip stays above
:data:`UNVOICED` has no pitch (NaN) and counts as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["UNVOICED", "estimate_f0", "pitch_scores"]

#: a clip whose normalised difference never dips below this is unvoiced
UNVOICED = 0.35
#: YIN's absolute threshold (step 4)
THRESHOLD = 0.15


def _difference(seg: Tensor, window: int, max_lag: int) -> Tensor:
    """d(τ) = Σ_{j<W} (x_j − x_{j+τ})² for τ = 0..max_lag, over the rows of ``seg`` (B, W + max_lag)."""
    n = 1 << int(np.ceil(np.log2(seg.shape[1] + window)))
    base = torch.zeros(seg.shape[0], seg.shape[1], dtype=seg.dtype)
    base[:, :window] = seg[:, :window]
    cross = torch.fft.irfft(torch.fft.rfft(seg, n) * torch.fft.rfft(base, n).conj(), n)[:, : max_lag + 1]
    sq = torch.nn.functional.pad(seg.pow(2).cumsum(1), (1, 0))
    lags = torch.arange(max_lag + 1)
    energy_shift = sq[:, lags + window] - sq[:, lags]
    energy0 = sq[:, window : window + 1]
    return (energy0 + energy_shift - 2.0 * cross).clamp_min(0.0)


def estimate_f0(
    audio: Tensor, rate: int, *, fmin: float = 60.0, fmax: float = 1000.0, frames: int = 3
) -> Tensor:
    """``(B,)`` f0 in Hz of ``(B, T)`` or ``(B, C, T)`` clips (channels averaged); NaN = unvoiced."""
    x = torch.as_tensor(audio).detach().double().cpu()
    if x.dim() == 3:
        x = x.mean(1)
    b, t = x.shape
    max_lag = int(np.ceil(rate / fmin))
    min_lag = max(2, int(rate / fmax))
    window = max(2 * max_lag, int(0.04 * rate))
    span = window + max_lag
    if t < span:
        x = torch.nn.functional.pad(x, (0, span - t))
        t = span
    # the loudest span, then frames half a window apart around it
    power = torch.nn.functional.pad(x.pow(2).cumsum(1), (1, 0))
    loud = power[:, span:] - power[:, :-span]
    centre = loud.argmax(1)
    diffs = torch.zeros(b, max_lag + 1, dtype=x.dtype)
    for k in range(frames):
        start = (centre + (k - frames // 2) * (window // 2)).clamp(0, t - span)
        idx = start[:, None] + torch.arange(span)[None]
        diffs += _difference(torch.gather(x, 1, idx), window, max_lag)
    d = diffs.numpy()
    f0 = np.full(b, np.nan)
    for i in range(b):
        if loud[i].max() < 1e-10:
            continue
        cum = np.cumsum(d[i, 1:])
        cmnd = np.ones_like(d[i])
        cmnd[1:] = d[i, 1:] * np.arange(1, max_lag + 1) / np.maximum(cum, 1e-300)
        region = cmnd[min_lag : max_lag]
        below = np.nonzero(region < THRESHOLD)[0]
        if len(below):
            tau = min_lag + below[0]
            while tau + 1 < max_lag and cmnd[tau + 1] < cmnd[tau]:
                tau += 1
        else:
            tau = min_lag + int(region.argmin())
        if cmnd[tau] > UNVOICED:
            continue
        shift = 0.0
        if 0 < tau < max_lag:
            # on the raw difference function, as the paper does: the normalisation skews the dip
            a, c, e = d[i, tau - 1], d[i, tau], d[i, tau + 1]
            denom = a - 2 * c + e
            if denom > 0:
                shift = 0.5 * (a - e) / denom
        f0[i] = rate / (tau + shift)
    return torch.from_numpy(f0)


def pitch_scores(
    f0: Tensor, pitches_hz: Sequence[float], labels: Tensor | None = None, tolerance_cents: float = 50.0
) -> dict[str, float]:
    """``pitch_accuracy``: share of clips within ``tolerance_cents`` (a quarter-tone) of some
    dataset pitch; ``pitch_coverage``: share of the pitches hit by at least one clip;
    ``label_accuracy`` (with ``labels``, rows < 0 skipped): share whose nearest pitch is the
    label's; ``voiced``: share with an f0 at all."""
    ref = torch.as_tensor(list(pitches_hz), dtype=torch.float64)
    f = torch.as_tensor(f0, dtype=torch.float64)
    voiced = torch.isfinite(f)
    cents = 1200.0 * torch.log2(f.clamp_min(1e-9)[:, None] / ref[None])
    dist, nearest = cents.abs().min(1)
    hit = voiced & (dist <= tolerance_cents)
    out = {
        "pitch_accuracy": float(hit.double().mean()),
        "pitch_coverage": float(len(torch.unique(nearest[hit])) / len(ref)),
        "voiced": float(voiced.double().mean()),
    }
    if labels is not None:
        lab = torch.as_tensor(labels).long().reshape(-1)
        given = lab >= 0
        if bool(given.any()):
            out["label_accuracy"] = float((hit & (nearest == lab))[given].double().mean())
    return out
