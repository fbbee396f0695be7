"""Graph statistics and their MMDs under the two protocols of the literature.

- ``gdss`` (GraphRNN's evaluation, reused by EDP-GNN and GDSS): degree histograms with a Gaussian
  kernel on the earth mover's distance (sigma = 1), clustering-coefficient histograms of 100 bins on
  [0, 1] with Gaussian-EMD (sigma = 0.1, ground distance |i - j| / 100), the mean 4-node orbit
  counts per node with a Gaussian kernel on the L2 distance (sigma = 30); the spectrum (not in
  GDSS's table; our choice) with Gaussian-EMD, sigma = 1, ground distance in eigenvalue units.
- ``spectre`` (SPECTRE, DiGress): the same statistics with a Gaussian kernel on the total
  variation distance (sigma = 1 degree, 0.1 clustering, 30 orbits, 1 spectrum).

Histograms are normalised to sum 1 before the kernel; the spectrum is the 200-bin histogram of the
normalised Laplacian's eigenvalues on (-1e-5, 2). Both protocols report the *squared* MMD with the
biased estimator (every pair, diagonal included), as both code bases do. The EMD between two 1-D
histograms of equal mass under the ground distance |i - j| / scale is the L1 distance of their
cumulative sums over scale, which is what is computed here (no solver needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np

from polydiff_graphs.orbits import orbit_counts

__all__ = [
    "DROPS_ISOLATES",
    "PROTOCOLS",
    "clustering_hist",
    "degree_hist",
    "gaussian",
    "gaussian_emd",
    "gaussian_tv",
    "mmd2",
    "mmd_table",
    "orbit_vector",
    "pairwise",
    "spectral_hist",
]

PROTOCOLS = ("gdss", "spectre")
#: protocols whose code drops a generated graph's isolated nodes before scoring (GDSS's
#: adjs_to_graphs does; SPECTRE's keeps them)
DROPS_ISOLATES: frozenset[str] = frozenset({"gdss"})


def _pad(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = max(len(x), len(y))
    return np.pad(x, (0, n - len(x))), np.pad(y, (0, n - len(y)))


def gaussian_emd(x: np.ndarray, y: np.ndarray, sigma: float = 1.0, scale: float = 1.0) -> float:
    x, y = _pad(np.asarray(x, float), np.asarray(y, float))
    emd = np.abs(np.cumsum(x - y)).sum() / scale
    return float(np.exp(-emd * emd / (2 * sigma * sigma)))


def gaussian_tv(x: np.ndarray, y: np.ndarray, sigma: float = 1.0) -> float:
    x, y = _pad(np.asarray(x, float), np.asarray(y, float))
    tv = np.abs(x - y).sum() / 2.0
    return float(np.exp(-tv * tv / (2 * sigma * sigma)))


def gaussian(x: np.ndarray, y: np.ndarray, sigma: float = 1.0) -> float:
    x, y = _pad(np.asarray(x, float), np.asarray(y, float))
    d2 = float(((x - y) ** 2).sum())
    return float(np.exp(-d2 / (2 * sigma * sigma)))


def _stack(rows: Sequence[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def pairwise(kind: str, xs: np.ndarray, ys: np.ndarray, sigma: float, scale: float = 1.0) -> np.ndarray:
    """The kernel matrix ``k(xs[i], ys[j])`` at once (the scalar kernels above, vectorised):
    ``kind`` is "emd", "tv" or "l2"; rows are zero-padded to a common length."""
    if kind == "emd":
        d = np.abs(np.cumsum(xs, 1)[:, None, :] - np.cumsum(ys, 1)[None, :, :]).sum(-1) / scale
        return np.exp(-d * d / (2 * sigma * sigma))
    if kind == "tv":
        d = np.abs(xs[:, None, :] - ys[None, :, :]).sum(-1) / 2.0
        return np.exp(-d * d / (2 * sigma * sigma))
    if kind == "l2":
        d2 = ((xs[:, None, :] - ys[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma * sigma))
    raise ValueError(f"unknown kernel {kind!r}")


def mmd2(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], kernel: Callable[..., float] | tuple, *,
         is_hist: bool = True) -> float:
    """Biased squared MMD: mean k(x, x') + mean k(y, y') - 2 mean k(x, y).

    ``kernel``: a function of two vectors, or ``(kind, sigma, scale)`` for :func:`pairwise`."""
    if not len(xs) or not len(ys):
        raise ValueError("MMD needs two non-empty sets")
    if is_hist:
        xs = [np.asarray(x, float) / max(np.sum(x), 1e-12) for x in xs]
        ys = [np.asarray(y, float) / max(np.sum(y), 1e-12) for y in ys]
    if isinstance(kernel, tuple):
        width = max(len(v) for v in (*xs, *ys))
        a, b = _stack(xs, width), _stack(ys, width)
        return float(pairwise(kernel[0], a, a, *kernel[1:]).mean() + pairwise(kernel[0], b, b, *kernel[1:]).mean()
                     - 2 * pairwise(kernel[0], a, b, *kernel[1:]).mean())

    def disc(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
        return float(np.mean([kernel(u, v) for u in a for v in b]))

    return disc(xs, xs) + disc(ys, ys) - 2 * disc(xs, ys)


def degree_hist(g: nx.Graph) -> np.ndarray:
    return np.asarray(nx.degree_histogram(g), dtype=float)


def clustering_hist(g: nx.Graph, bins: int = 100) -> np.ndarray:
    values = list(nx.clustering(g).values()) if g.number_of_nodes() else []
    return np.histogram(values, bins=bins, range=(0.0, 1.0))[0].astype(float)


def orbit_vector(g: nx.Graph) -> np.ndarray:
    """Mean orbit counts per node (GraphRNN's summary of a graph), 15 numbers."""
    if g.number_of_nodes() == 0:
        return np.zeros(15)
    return orbit_counts(g).sum(0) / g.number_of_nodes()


def spectral_hist(g: nx.Graph) -> np.ndarray:
    if g.number_of_nodes() == 0:
        return np.zeros(200)
    lap = nx.normalized_laplacian_matrix(g).toarray()
    eig = np.linalg.eigvalsh(lap)
    return np.histogram(eig, bins=200, range=(-1e-5, 2.0))[0].astype(float)


STATISTICS: dict[str, Callable[[nx.Graph], np.ndarray]] = {
    "degree": degree_hist,
    "clustering": clustering_hist,
    "orbit": orbit_vector,
    "spectral": spectral_hist,
}


def _kernel(protocol: str, stat: str) -> tuple[tuple[str, float, float], bool]:
    """((kind, sigma, ground-distance scale), is_hist) of a statistic under a protocol."""
    sigma = {"degree": 1.0, "clustering": 0.1, "orbit": 30.0, "spectral": 1.0}[stat]
    if stat == "orbit":
        return ("l2" if protocol == "gdss" else "tv", sigma, 1.0), False
    if protocol == "gdss":
        # ground distance in the statistic's own units: clustering bins are 1/100 wide,
        # spectrum bins 2/200 (in bins, two spectra a few bins apart would be unrelated)
        return ("emd", sigma, 100.0 if stat in ("clustering", "spectral") else 1.0), True
    return ("tv", sigma, 1.0), True


def summaries(graphs: Sequence[nx.Graph], stats: Sequence[str] = tuple(STATISTICS)) -> dict[str, list[np.ndarray]]:
    """Each statistic of each graph, computed once and shared by both protocols."""
    return {s: [STATISTICS[s](g) for g in graphs] for s in stats}


def mmd_table(ref: dict[str, list[np.ndarray]], gen: dict[str, list[np.ndarray]],
              protocol: str = "gdss") -> dict[str, float]:
    """``{statistic: squared MMD}`` between two sets of summaries (from :func:`summaries`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    out = {}
    for stat in ref:
        kernel, is_hist = _kernel(protocol, stat)
        out[stat] = mmd2(ref[stat], gen[stat], kernel, is_hist=is_hist)
    return out
