"""Point-cloud metrics computed exactly as PointFlow (Yang et al. 2019), PVD and LION compute them.

- Chamfer distance: squared nearest-neighbour distances, averaged over the points of each cloud, in
  both directions, summed (no square root): CD(X, Y) = mean_x min_y |x-y|^2 + mean_y min_x |x-y|^2.
- EMD: the mean Euclidean (not squared) distance of an optimal one-to-one matching of two clouds of
  equal size — exact by ``scipy.optimize.linear_sum_assignment``, or approximated by entropic
  optimal transport (log-domain Sinkhorn, rounded to a feasible plan: an upper bound near it). On a
  CPU the exact one is the faster (measured); the approximation is batched tensor work for a GPU.
- MMD: for each reference cloud the distance to its nearest sample, averaged over references.
- COV: the share of references that are the nearest reference of some sample.
- 1-NNA: leave-one-out 1-nearest-neighbour accuracy of telling samples from references over the
  union of both sets (50 % is ideal, 100 % means every cloud's nearest neighbour is from its own
  set); ties are broken by the lowest index, as ``torch.topk`` does in PointFlow's code.
- JSD: Jensen-Shannon divergence (base 2) of the point-occupancy distributions of the two sets on a
  28^3 grid of the cube [-0.5, 0.5]^3 clipped to its inscribed sphere, each point counted in its
  nearest grid cell. Our clouds live in [-1, 1] (box mode), so they are halved before gridding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "chamfer_matrix",
    "chamfer_pair",
    "cov_mmd",
    "emd_exact",
    "emd_matrix",
    "emd_sinkhorn",
    "jsd",
    "one_nn_accuracy",
    "pointflow_metrics",
]


def chamfer_pair(x: Tensor, y: Tensor) -> Tensor:
    """Chamfer distance of ``x`` ``(B, N, 3)`` and ``y`` ``(B, M, 3)``, pair by pair -> ``(B,)``."""
    d = torch.cdist(x.float(), y.float()).square_()  # float32, as PointFlow's kernels
    return d.min(2).values.mean(1) + d.min(1).values.mean(1)


def _pairs(n_a: int, n_b: int, fn: Callable[[list[int], list[int]], Tensor], batch: int,
           progress: str | None) -> Tensor:
    out = torch.empty(n_a, n_b, dtype=torch.float64)
    pairs = [(i, j) for i in range(n_a) for j in range(n_b)]
    chunks = [pairs[s:s + batch] for s in range(0, len(pairs), batch)]
    if progress:
        from rich.progress import track

        chunks = track(chunks, description=progress, transient=True)
    for chunk in chunks:
        ii = [p[0] for p in chunk]
        jj = [p[1] for p in chunk]
        out[ii, jj] = fn(ii, jj).double().cpu()
    return out


def chamfer_matrix(a: Tensor, b: Tensor, batch: int = 64, progress: str | None = None) -> Tensor:
    """Pairwise Chamfer distances of the clouds ``a`` ``(n_a, N, 3)`` and ``b`` -> ``(n_a, n_b)``."""
    return _pairs(len(a), len(b), lambda i, j: chamfer_pair(a[i], b[j]), batch, progress)


def emd_exact(x: Tensor, y: Tensor) -> float:
    """Exact EMD of two clouds of equal size: the mean Euclidean distance of an optimal matching."""
    from scipy.optimize import linear_sum_assignment

    if x.shape[0] != y.shape[0]:
        raise ValueError(f"EMD needs clouds of equal size, got {x.shape[0]} and {y.shape[0]} points")
    cost = torch.cdist(x.double(), y.double()).numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def emd_sinkhorn(x: Tensor, y: Tensor, eps: float = 1e-3, iters: int = 300) -> Tensor:
    """Approximate EMD of pairs ``x``, ``y`` ``(B, N, 3)`` -> ``(B,)``: log-domain Sinkhorn with
    uniform weights, the blur annealed from the mean pair distance down to ``eps`` times it
    (epsilon scaling), then the plan rounded onto the exact marginals (Altschuler et al. 2017,
    Alg. 2). The rounded plan is feasible, so its cost is an upper bound of the exact EMD that
    tightens as ``eps`` shrinks; the tests bound the gap."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"EMD needs clouds of equal size, got {x.shape[1]} and {y.shape[1]} points")
    c = torch.cdist(x.double(), y.double())
    b, n, _ = c.shape
    scale = c.mean((1, 2), keepdim=True).clamp_min(1e-12)
    log_w = -float(np.log(n))
    f = torch.zeros(b, n, 1, dtype=c.dtype)
    g = torch.zeros(b, 1, n, dtype=c.dtype)
    for t in range(iters):
        e = scale * max(eps, 0.8 ** t)
        f = -e * torch.logsumexp((g - c) / e + log_w, dim=2, keepdim=True)
        g = -e * torch.logsumexp((f - c) / e + log_w, dim=1, keepdim=True)
    plan = torch.exp((f + g - c) / e + 2 * log_w)
    w = 1.0 / n
    plan = plan * (w / plan.sum(2, keepdim=True)).clamp(max=1.0)
    plan = plan * (w / plan.sum(1, keepdim=True)).clamp(max=1.0)
    dr = w - plan.sum(2, keepdim=True)
    dc = w - plan.sum(1, keepdim=True)
    plan = plan + dr * dc / dr.sum((1, 2), keepdim=True).clamp_min(1e-300)
    return (plan * c).sum((1, 2))


def emd_matrix(a: Tensor, b: Tensor, exact: bool, batch: int = 16, progress: str | None = None) -> Tensor:
    """Pairwise EMDs ``(n_a, n_b)``, exact (scipy) or approximate (Sinkhorn)."""
    if exact:
        return _pairs(len(a), len(b), lambda i, j: torch.tensor([emd_exact(a[p], b[q]) for p, q in zip(i, j, strict=True)]),
                      batch, progress)
    return _pairs(len(a), len(b), lambda i, j: emd_sinkhorn(a[i], b[j]), batch, progress)


def cov_mmd(m_sr: Tensor) -> tuple[float, float]:
    """(COV, MMD) from the sample-by-reference distance matrix ``m_sr`` ``(n_s, n_r)``."""
    nearest_ref = m_sr.argmin(1)
    mmd = float(m_sr.min(0).values.mean())
    cov = float(nearest_ref.unique().numel()) / m_sr.shape[1]
    return cov, mmd


def one_nn_accuracy(m_rr: Tensor, m_rs: Tensor, m_ss: Tensor) -> float:
    """Leave-one-out 1-NN accuracy over references (label 1) and samples (label 0)."""
    n_r, n_s = m_rr.shape[0], m_ss.shape[0]
    label = torch.cat([torch.ones(n_r), torch.zeros(n_s)])
    m = torch.cat([torch.cat([m_rr, m_rs], 1), torch.cat([m_rs.t(), m_ss], 1)], 0).double()
    m = m + torch.diag(torch.full((n_r + n_s,), float("inf"), dtype=m.dtype))
    idx = m.topk(1, dim=0, largest=False).indices[0]
    pred = label[idx]
    return float((pred == label).double().mean())


def _grid(resolution: int) -> np.ndarray:
    spacing = 1.0 / (resolution - 1)
    axis = np.arange(resolution) * spacing - 0.5
    g = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return g[np.linalg.norm(g, axis=1) <= 0.5]


def occupancy(clouds: list[np.ndarray], resolution: int = 28) -> np.ndarray:
    """Points per cell of the clipped grid, over all clouds (each point in its nearest cell)."""
    from scipy.spatial import cKDTree

    grid = _grid(resolution)
    tree = cKDTree(grid)
    counts = np.zeros(len(grid))
    for p in clouds:
        _, idx = tree.query(p)
        np.add.at(counts, idx, 1)
    return counts


def _entropy2(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def jsd(samples: list[np.ndarray], refs: list[np.ndarray], resolution: int = 28, scale: float = 0.5) -> float:
    """Jensen-Shannon divergence (bits) of the two sets' occupancy distributions."""
    p = occupancy([s * scale for s in samples], resolution)
    q = occupancy([r * scale for r in refs], resolution)
    p, q = p / p.sum(), q / q.sum()
    return _entropy2((p + q) / 2) - (_entropy2(p) + _entropy2(q)) / 2


def pointflow_metrics(samples: Tensor, refs: Tensor, *, emd: str = "auto", batch: int = 64,
                      progress: bool = False) -> dict[str, float]:
    """MMD, COV and 1-NNA with CD and EMD, and JSD, of ``samples`` against ``refs`` (both
    ``(n, N, 3)``, equal counts as the papers use). ``emd``: exact | approx | auto (= exact) | off."""
    out: dict[str, float] = {}
    show = (lambda s: s) if progress else (lambda s: None)
    m_rs = chamfer_matrix(refs, samples, batch, show("CD ref x sample"))
    m_rr = chamfer_matrix(refs, refs, batch, show("CD ref x ref"))
    m_ss = chamfer_matrix(samples, samples, batch, show("CD sample x sample"))
    cov, mmd = cov_mmd(m_rs.t())
    out.update({"MMD-CD": mmd, "COV-CD": cov, "1-NNA-CD": one_nn_accuracy(m_rr, m_rs, m_ss)})
    if emd != "off" and samples.shape[1] == refs.shape[1]:
        # auto is exact: on a CPU scipy's assignment beats our Sinkhorn by far at every size we
        # measured (2,048 points: 3 s against minutes a pair; docs/benchmarks.md)
        exact = emd != "approx"
        e_rs = emd_matrix(refs, samples, exact, progress=show("EMD ref x sample"))
        e_rr = emd_matrix(refs, refs, exact, progress=show("EMD ref x ref"))
        e_ss = emd_matrix(samples, samples, exact, progress=show("EMD sample x sample"))
        cov, mmd = cov_mmd(e_rs.t())
        out.update({"MMD-EMD": mmd, "COV-EMD": cov, "1-NNA-EMD": one_nn_accuracy(e_rr, e_rs, e_ss)})
    out["JSD"] = jsd(list(samples.numpy()), list(refs.numpy()))
    return out
