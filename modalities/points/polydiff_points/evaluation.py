"""``polydiff evaluate`` for points: the PointFlow suite against the test split, as many
references as samples, the normalisation mode stated in the result.

Under ``box`` normalisation the samples are normalised per shape exactly as the references were
(:func:`as_references`) before anything is measured. That is the per-shape-box protocol of Luo &
Hu's DPM evaluation, which LION and its successors reuse: both sets go through one per-shape
bounding-box normalisation, so a sample is judged on its shape, not on its size or offset, which
the data's own normalisation has already removed from every reference. Under ``global``
normalisation (PointFlow's) the samples are measured as they come: the one data-set scale is part
of what the model must get right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["as_references", "pointflow", "references"]


def references(config: Mapping[str, Any], n: int, seed: int = 0):
    """``n`` clouds of the test split (all of them when ``n`` is larger), and their labels."""
    from polydiff.config import data_source
    from polydiff_points.data import build_dataset

    ds = build_dataset(data_source(config["data"]), config, "test")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return torch.stack([ds.clouds[i] for i in idx]), [ds.labels[i] for i in idx], ds


def as_references(samples: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
    """``(n, N, 3)`` samples normalised per shape as the references were (``box``), or unchanged
    (``global``); see the module docstring."""
    from polydiff_points.data import data_config, normalize_clouds

    cfg = data_config(config)
    if cfg["normalize"] != "box":
        return samples
    normed, _ = normalize_clouds(list(samples.detach().float().cpu().numpy()), "box", bool(cfg["center"]))
    return torch.stack([torch.from_numpy(p) for p in normed])


def pointflow(samples: torch.Tensor, config: Mapping[str, Any], *, mask: Any = None) -> dict[str, Any]:
    from polydiff_points.data import data_config
    from polydiff_points.metrics import chamfer_matrix, pointflow_metrics

    if mask is not None and bool((mask <= 0).any()):
        raise ValueError("the PointFlow metrics need clouds of one size; these samples are ragged")
    cfg = data_config(config)
    refs, labels, ds = references(config, samples.shape[0])
    samples = as_references(samples[: refs.shape[0]].float(), config)
    # EMD is off here: 3 n^2 exact assignments (0.1-3 s each on a CPU) would dwarf the sampling;
    # benchmarks/points.py quality --emd exact computes the EMD rows
    result: dict[str, Any] = pointflow_metrics(samples, refs, emd="off")
    result["EMD"] = "off (benchmarks/points.py quality --emd exact)"
    # which class each sample looks like: that of its nearest reference by CD
    nearest = chamfer_matrix(samples, refs).argmin(1)
    found = {labels[int(i)] for i in nearest}
    result["classes_covered"] = f"{len(found)}/{len(ds.classes)}"
    result["n"] = int(refs.shape[0])
    result["normalize"] = cfg["normalize"]
    result["samples"] = ("normalised per shape as the references (DPM/LION's box protocol)"
                         if cfg["normalize"] == "box" else "as generated (PointFlow's global protocol)")
    return result
