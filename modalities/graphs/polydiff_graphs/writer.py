"""Writing sampled graphs: a PNG grid of drawings (the summary) and one GraphML file per sample."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from polydiff.atomic import atomic_write
from polydiff_graphs.graphs import decode

__all__ = ["draw_grid", "write_samples"]


def draw_grid(graphs: Sequence[nx.Graph], path: Path, *, ncols: int | None = None, seed: int = 0) -> None:
    """Spring-layout drawings of ``graphs`` in a grid, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(1, len(graphs))
    ncols = ncols or min(8, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 1.8 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, g in zip(axes.flat, graphs, strict=False):
        pos = nx.spring_layout(g, seed=seed) if g.number_of_nodes() else {}
        size = 30 if g.number_of_nodes() <= 40 else 8
        nx.draw_networkx(g, pos, ax=ax, with_labels=False, node_size=size, width=0.6,
                         node_color="#3465a4", edge_color="#555753")
        ax.set_title(f"{g.number_of_nodes()} n, {g.number_of_edges()} e", fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def write_samples(samples: Mapping[str, Any], out_dir: Path, *, mask: Any = None,
                  cond: Mapping[str, Any] | None = None, prefix: str = "sample") -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = decode(samples, mask)
    grid = out_dir / f"{prefix}s.png"
    draw_grid(graphs, grid)
    written = [grid]
    width = len(str(max(len(graphs) - 1, 0)))
    for i, g in enumerate(graphs):
        path = out_dir / f"{prefix}-{i:0{width}d}.graphml"
        atomic_write(path, lambda tmp, g=g: nx.write_graphml(g, tmp))
        written.append(path)
    return written
