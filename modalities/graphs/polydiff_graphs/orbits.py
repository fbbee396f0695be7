"""Node orbit counts of the graphlets with up to 4 nodes (the 15 orbits of ORCA, Hocevar & Demsar
2014), counted here by enumerating every connected induced subgraph of 3 and 4 nodes once (ESU,
Wernicke 2006) and classifying it by its degree sequence.

Orbits: 0 degree; 3-node path: 1 end, 2 middle; triangle: 3; 4-node path: 4 end, 5 middle;
star: 6 leaf, 7 centre; 4-cycle: 8; paw (triangle with a tail): 9 tail end, 10 the triangle's
degree-2 nodes, 11 its degree-3 node; diamond: 12 degree-2 nodes, 13 degree-3 nodes; K4: 14.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

__all__ = ["NUM_ORBITS", "orbit_counts"]

NUM_ORBITS = 15

# (number of edges, sorted degree sequence) -> orbit of a node by its degree inside the subgraph
_FOUR = {
    (3, (1, 1, 2, 2)): {1: 4, 2: 5},
    (3, (1, 1, 1, 3)): {1: 6, 3: 7},
    (4, (2, 2, 2, 2)): {2: 8},
    (4, (1, 2, 2, 3)): {1: 9, 2: 10, 3: 11},
    (5, (2, 2, 3, 3)): {2: 12, 3: 13},
    (6, (3, 3, 3, 3)): {3: 14},
}


def orbit_counts(g: nx.Graph) -> np.ndarray:
    """``(N, 15)`` int64: how often each node (in ``g.nodes`` order) touches each orbit."""
    index = {v: i for i, v in enumerate(g.nodes)}
    n = len(index)
    nbrs = [set() for _ in range(n)]
    for u, v in g.edges:
        a, b = index[u], index[v]
        if a != b:
            nbrs[a].add(b)
            nbrs[b].add(a)
    out = np.zeros((n, NUM_ORBITS), dtype=np.int64)
    for v in range(n):
        out[v, 0] = len(nbrs[v])

    def classify(sub: tuple[int, ...]) -> None:
        deg = {u: sum(1 for w in sub if w in nbrs[u]) for u in sub}
        edges = sum(deg.values()) // 2
        if len(sub) == 3:
            if edges == 3:
                for u in sub:
                    out[u, 3] += 1
            else:
                for u in sub:
                    out[u, 2 if deg[u] == 2 else 1] += 1
            return
        table = _FOUR[(edges, tuple(sorted(deg.values())))]
        for u in sub:
            out[u, table[deg[u]]] += 1

    # ESU: grow from the smallest node v, extending only with nodes > v that are exclusive
    # neighbours of the newest node (not adjacent to the subgraph so far), so each connected
    # subset is produced once
    def extend(sub: tuple[int, ...], ext: set[int], v: int, closed: set[int]) -> None:
        if len(sub) >= 3:
            classify(sub)
            if len(sub) == 4:
                return
        ext = set(ext)
        while ext:
            w = ext.pop()
            new_ext = ext | {u for u in nbrs[w] if u > v and u not in closed}
            extend(sub + (w,), new_ext, v, closed | nbrs[w] | {w})

    for v in range(n):
        extend((v,), {u for u in nbrs[v] if u > v}, v, nbrs[v] | {v})
    return out
