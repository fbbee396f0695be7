"""Graphs as tensors and back: items, padded batches, sample layouts, decoding.

An item's state is ``{"nodes": (N, F), "adjacency": (N, N)}``: node channel 0 is 1 ("the node
exists"), the others are the numeric node attributes named in ``data.node_attributes``; the
adjacency holds ``+ADJ_SCALE`` for an edge and ``-ADJ_SCALE`` for a non-edge, 0 on the diagonal.
Batches pad to the largest graph at the end and carry the node mask and its pair mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch

from polydiff.protocol import Batch
from polydiff.state import pair_mask
from polydiff_graphs.defaults import ADJ_SCALE

__all__ = [
    "GraphData",
    "GraphSet",
    "collate",
    "decode",
    "layout",
    "node_counts_from_spec",
    "to_state",
]


class GraphData:
    """One undirected simple graph: ``n`` nodes 0..n-1, ``edges`` (E, 2) with u < v, features."""

    __slots__ = ("edges", "features", "n")

    def __init__(self, n: int, edges: np.ndarray, features: np.ndarray | None = None):
        self.n = int(n)
        self.edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        self.features = None if features is None else np.asarray(features, dtype=np.float32)

    @classmethod
    def from_networkx(cls, g: nx.Graph, features: np.ndarray | None = None) -> GraphData:
        index = {v: i for i, v in enumerate(g.nodes)}
        edges = [(min(index[u], index[v]), max(index[u], index[v])) for u, v in g.edges if u != v]
        return cls(len(index), np.array(sorted(set(edges)), dtype=np.int64).reshape(-1, 2), features)

    def to_networkx(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(self.n))
        g.add_edges_from(self.edges.tolist())
        return g


def to_state(g: GraphData, num_features: int = 1) -> dict[str, torch.Tensor]:
    """The state of one graph (no batch dimension)."""
    adj = torch.full((g.n, g.n), -ADJ_SCALE)
    if len(g.edges):
        e = torch.from_numpy(g.edges)
        adj[e[:, 0], e[:, 1]] = ADJ_SCALE
        adj[e[:, 1], e[:, 0]] = ADJ_SCALE
    adj.fill_diagonal_(0.0)
    nodes = torch.zeros(g.n, num_features)
    nodes[:, 0] = 1.0
    if num_features > 1:
        if g.features is None or g.features.shape != (g.n, num_features - 1):
            raise ValueError(f"graph has no node features of width {num_features - 1}")
        nodes[:, 1:] = torch.from_numpy(g.features)
    return {"nodes": nodes, "adjacency": adj}


class GraphSet:
    """A map-style data set of graphs; items are built on access (a grid set stays small)."""

    def __init__(self, graphs: Sequence[GraphData], num_features: int = 1, name: str = ""):
        self.graphs = list(graphs)
        self.num_features = int(num_features)
        self.name = name

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = self.graphs[i]
        return {"x": to_state(g, self.num_features), "cond": {"nodes": g.n}}

    def node_counts(self) -> list[int]:
        return [g.n for g in self.graphs]

    def networkx(self) -> list[nx.Graph]:
        return [g.to_networkx() for g in self.graphs]


def collate(items: Sequence[Mapping[str, Any]]) -> Batch:
    """Pad graphs to the largest at the end; mask ``{"nodes": (B, N), "adjacency": pair mask}``."""
    sizes = [it["x"]["nodes"].shape[0] for it in items]
    n, f = max(sizes), items[0]["x"]["nodes"].shape[1]
    b = len(items)
    nodes = torch.zeros(b, n, f)
    adj = torch.zeros(b, n, n)
    node_mask = torch.zeros(b, n)
    for i, (it, k) in enumerate(zip(items, sizes, strict=True)):
        nodes[i, :k] = it["x"]["nodes"]
        adj[i, :k, :k] = it["x"]["adjacency"]
        node_mask[i, :k] = 1.0
    cond = {"nodes": torch.tensor(sizes, dtype=torch.long)}
    return Batch({"nodes": nodes, "adjacency": adj}, {"nodes": node_mask, "adjacency": pair_mask(node_mask)}, cond)


def node_counts_from_spec(spec: str, n: int, where: str = "nodes") -> list[int]:
    """``"N"`` or ``"N1,N2,..."`` (used in turn) -> ``n`` node counts; ValueError if malformed."""
    try:
        values = [int(s) for s in str(spec).replace(" ", "").split(",") if s]
    except ValueError:
        raise ValueError(f"{where}={spec}: expected node counts, e.g. 16 or 12,16,20") from None
    if not values or min(values) < 1:
        raise ValueError(f"{where}={spec}: node counts must be integers >= 1")
    return [values[i % len(values)] for i in range(n)]


def layout(counts: Sequence[int], num_features: int) -> Batch:
    """Zero states and masks of graphs with the given node counts (padded at the end)."""
    items = []
    for k in counts:
        items.append({"x": {"nodes": torch.zeros(k, num_features), "adjacency": torch.zeros(k, k)}})
    return collate(items)


def decode(samples: Mapping[str, torch.Tensor], mask: Any = None) -> list[nx.Graph]:
    """Sampled states -> networkx graphs: valid nodes only, an edge where the symmetrised entry is
    positive; node channels beyond the first become attributes ``f1``, ``f2``, ..."""
    adj = samples["adjacency"].detach().float().cpu()
    nodes = samples["nodes"].detach().float().cpu()
    b, n = adj.shape[0], adj.shape[-1]
    if mask is not None and isinstance(mask, Mapping) and mask.get("nodes") is not None:
        node_mask = mask["nodes"].detach().cpu().reshape(b, -1)[:, :n] > 0
    else:
        # without a mask, a padded node is one whose every entry is exactly 0
        node_mask = (nodes.abs().sum(-1) > 0) | (adj.abs().sum(-1) > 0)
    sym = 0.5 * (adj + adj.transpose(-1, -2))
    out = []
    for i in range(b):
        idx = torch.nonzero(node_mask[i]).flatten()
        a = sym[i][idx][:, idx] > 0
        a.fill_diagonal_(False)
        g = nx.Graph()
        for j in range(len(idx)):
            attrs = {f"f{c}": float(nodes[i, idx[j], c]) for c in range(1, nodes.shape[-1])}
            g.add_node(j, **attrs)
        u, v = torch.nonzero(torch.triu(a, 1), as_tuple=True)
        g.add_edges_from(zip(u.tolist(), v.tolist(), strict=True))
        out.append(g)
    return out
