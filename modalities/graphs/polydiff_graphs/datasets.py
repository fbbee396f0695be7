"""Data sources: the literature's synthetic sets rebuilt offline, and the user's graph files.

Built-ins (``data.seed`` fixes the graphs; the split is fixed by the recipe):

- ``community-small`` (EDP-GNN's generator, used by GDSS): 100 graphs, N drawn from 12..20, two
  communities of N // 2 nodes, each G(N // 2, 0.7) seeded with 0 and 1 as in that generator, bridges
  with probability 0.1 / (N // 2) per cross pair (0.05 bridges per node expected), at least one
  (between the first nodes). GDSS split: the first 20 % is the test set, the rest training.
- ``grid`` (GraphRNN, GDSS): the 100 two-dimensional grids of 10..19 x 10..19 nodes; GDSS split.
- ``planar`` (SPECTRE, DiGress): 200 Delaunay triangulations of 64 uniform points in the unit
  square. ``sbm`` (SPECTRE, DiGress): 200 stochastic block models with 2-5 communities of 20-40
  nodes, p_in = 0.3, p_out = 0.005. SPECTRE split: a fixed permutation, 20 % test, then 80 % of
  the rest training and 20 % validation (the validation graphs are in neither split here).

User files: GraphML (.graphml), GML (.gml), edge lists (.edgelist, .edges, .txt: "u v" per line),
the reference JSON format of ``/work/shared/data/graphs`` (a ``graphs`` list and ``test_count``),
or a folder of such files (one graph per file, sorted by name; the test split is every fifth file).
Normalisations, counted and reported once as a warning: directed graphs are made undirected,
self-loops dropped, multi-edges merged. Errors (``DataError``, one line naming the file): unreadable
or malformed files, graphs without nodes, non-numeric node attributes named in
``data.node_attributes``, a folder with no graph files.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from polydiff.protocol import DataError
from polydiff_graphs.defaults import BUILTINS
from polydiff_graphs.graphs import GraphData, GraphSet

__all__ = [
    "GRAPH_SUFFIXES",
    "build_dataset",
    "community_small",
    "grid",
    "load_reference",
    "planar",
    "read_graph_file",
    "sbm",
    "split_indices",
]

GRAPH_SUFFIXES = (".graphml", ".gml", ".edgelist", ".edges", ".txt", ".json")


# --------------------------------------------------------------------------- built-in recipes


def community_small(rng: np.random.Generator, count: int = 100) -> list[nx.Graph]:
    out = []
    for _ in range(count):
        half = int(rng.integers(12, 21)) // 2
        # the EDP-GNN/GDSS generator seeds the two communities' G(n, 0.7) with 0 and 1, so all
        # graphs of one size share their communities and differ in the bridges only
        g = nx.disjoint_union(nx.gnp_random_graph(half, 0.7, seed=0), nx.gnp_random_graph(half, 0.7, seed=1))
        # bridge probability chosen so that E[bridges] / nodes = p_inter = 0.05
        p_bridge = 0.05 * 2 / half
        bridges = [(i, half + j) for i in range(half) for j in range(half) if rng.random() < p_bridge]
        g.add_edges_from(bridges or [(0, half)])  # the communities are always joined
        out.append(g)
    return out


def grid(rng: np.random.Generator | None = None) -> list[nx.Graph]:
    return [
        nx.convert_node_labels_to_integers(nx.grid_2d_graph(i, j))
        for i in range(10, 20)
        for j in range(10, 20)
    ]


def planar(rng: np.random.Generator, count: int = 200, n: int = 64) -> list[nx.Graph]:
    from scipy.spatial import Delaunay

    out = []
    for _ in range(count):
        tri = Delaunay(rng.random((n, 2)))
        g = nx.Graph()
        g.add_nodes_from(range(n))
        for a, b, c in tri.simplices.tolist():
            g.add_edges_from([(a, b), (b, c), (a, c)])
        out.append(g)
    return out


SBM_P_IN, SBM_P_OUT = 0.3, 0.005


def sbm(rng: np.random.Generator, count: int = 200) -> list[nx.Graph]:
    out = []
    for _ in range(count):
        k = int(rng.integers(2, 6))
        sizes = [int(s) for s in rng.integers(20, 41, size=k)]
        probs = [[SBM_P_IN if i == j else SBM_P_OUT for j in range(k)] for i in range(k)]
        g = nx.stochastic_block_model(sizes, probs, seed=int(rng.integers(2**31)))
        out.append(nx.Graph(g))  # drop the block attributes: the model must not see them
    return out


def split_indices(name: str, count: int, split: str) -> list[int]:
    """The papers' splits: GDSS (first 20 % test) or SPECTRE (fixed permutation)."""
    if name in ("planar", "sbm"):
        perm = np.random.default_rng(1234).permutation(count).tolist()
        test_len = int(round(count * 0.2))
        train_len = int(round((count - test_len) * 0.8))
        return perm[:train_len] if split == "train" else perm[count - test_len:]
    test_len = int(count * 0.2)
    return list(range(test_len, count)) if split == "train" else list(range(test_len))


_CACHE: dict[tuple[str, int], list[GraphData]] = {}


def builtin_graphs(name: str, seed: int = 0) -> list[GraphData]:
    """Every graph of a built-in set, in the recipe's order (cached per process)."""
    key = (name, seed)
    if key not in _CACHE:
        rng = np.random.default_rng([seed, BUILTINS.index(name)])
        maker = {"community-small": community_small, "grid": grid, "planar": planar, "sbm": sbm}[name]
        _CACHE[key] = [GraphData.from_networkx(g) for g in maker(rng)]
    return _CACHE[key]


# --------------------------------------------------------------------------- user files


class _Counts:
    def __init__(self) -> None:
        self.directed = self.self_loops = self.multi_edges = 0

    def note(self, source: str) -> None:
        parts = []
        if self.directed:
            parts.append(f"{self.directed} directed graphs made undirected")
        if self.self_loops:
            parts.append(f"{self.self_loops} self-loops dropped")
        if self.multi_edges:
            parts.append(f"{self.multi_edges} repeated edges merged")
        if parts:
            warnings.warn(f"{source}: " + ", ".join(parts), stacklevel=3)


def _normalise(g: nx.Graph, counts: _Counts) -> nx.Graph:
    if g.is_directed():
        counts.directed += 1
    if g.is_multigraph() or g.is_directed():
        simple = nx.Graph()
        simple.add_nodes_from(g.nodes(data=True))
        for u, v in g.edges():
            if u != v and simple.has_edge(u, v):
                counts.multi_edges += 1
            simple.add_edge(u, v)
        g = simple
    loops = list(nx.selfloop_edges(g))
    if loops:
        counts.self_loops += len(loops)
        g = nx.Graph(g)
        g.remove_edges_from(loops)
    return g


def _read_edgelist(path: Path, counts: _Counts) -> nx.Graph:
    g = nx.Graph()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < 2:
            raise DataError(f"{path}: line {lineno}: expected 'u v', got {line!r}")
        u, v = parts[0], parts[1]
        if u == v:
            counts.self_loops += 1
            g.add_node(u)
            continue
        if g.has_edge(u, v):
            counts.multi_edges += 1
        g.add_edge(u, v)
    return g


def _features(g: nx.Graph, path: Path, attributes: Sequence[str]) -> np.ndarray | None:
    if not attributes:
        return None
    out = np.zeros((g.number_of_nodes(), len(attributes)), dtype=np.float32)
    for i, (node, data) in enumerate(g.nodes(data=True)):
        for j, name in enumerate(attributes):
            if name not in data:
                raise DataError(f"{path}: node {node!r} has no attribute {name!r}")
            try:
                out[i, j] = float(data[name])
            except (TypeError, ValueError):
                raise DataError(f"{path}: node {node!r}: attribute {name!r} = {data[name]!r} is not a number") from None
    if not np.isfinite(out).all():
        raise DataError(f"{path}: node attributes hold non-finite values")
    return out


def read_graph_file(path: Path, attributes: Sequence[str] = (), counts: _Counts | None = None) -> GraphData:
    """One graph from a GraphML, GML or edge-list file (DataError for anything malformed)."""
    counts = counts or _Counts()
    suffix = path.suffix.lower()
    try:
        if suffix == ".graphml":
            g = nx.read_graphml(path)
        elif suffix == ".gml":
            g = nx.read_gml(path, label=None)
        elif suffix in (".edgelist", ".edges", ".txt"):
            g = _read_edgelist(path, counts)
        else:
            raise DataError(f"{path}: unknown graph format {suffix or '(no suffix)'}; expected one of {', '.join(GRAPH_SUFFIXES)}")
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    except Exception as exc:  # networkx raises many types (ParseError, NetworkXError, KeyError)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: malformed {suffix[1:]} file ({msg})") from None
    g = _normalise(g, counts)
    if g.number_of_nodes() == 0:
        raise DataError(f"{path}: the graph has no nodes")
    return GraphData.from_networkx(g, _features(g, path, attributes))


def load_reference(path: Path) -> tuple[list[GraphData], int]:
    """A reference JSON list (``{"graphs": [{"num_nodes", "edges"}], "test_count"}``) and its
    test count (the first ``test_count`` graphs are the test set)."""
    try:
        doc = json.loads(path.read_text())
        graphs = doc["graphs"]
        test_count = int(doc.get("test_count", int(len(graphs) * 0.2)))
        out = []
        for i, item in enumerate(graphs):
            n = int(item["num_nodes"])
            edges = np.asarray(item["edges"], dtype=np.int64).reshape(-1, 2)
            if n < 1:
                raise DataError(f"{path}: graph {i} has no nodes")
            if len(edges) and (edges.min() < 0 or edges.max() >= n):
                raise DataError(f"{path}: graph {i}: an edge names a node outside 0..{n - 1}")
            loops = edges[:, 0] == edges[:, 1]
            if loops.any():
                raise DataError(f"{path}: graph {i} has self-loops")
            edges = np.unique(np.sort(edges, axis=1), axis=0)
            out.append(GraphData(n, edges))
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a graph list (expected graphs: [{{num_nodes, edges}}]; {type(exc).__name__}: {exc})") from None
    if not out:
        raise DataError(f"{path}: holds no graphs")
    if not 0 < test_count < len(out):
        raise DataError(f"{path}: test_count {test_count} leaves no training or no test graphs")
    return out, test_count


def _user_graphs(source: str, attributes: Sequence[str], split: str) -> list[GraphData]:
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file() and path.suffix.lower() == ".json":
        graphs, test_count = load_reference(path)
        if attributes:
            raise DataError(f"{path}: reference JSON files carry no node attributes")
        return graphs[test_count:] if split == "train" else graphs[:test_count]
    counts = _Counts()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in GRAPH_SUFFIXES[:-1])
        if not files:
            raise DataError(f"{path}: no graph files ({', '.join(GRAPH_SUFFIXES[:-1])})")
        graphs = [read_graph_file(p, attributes, counts) for p in files]
        counts.note(str(path))
        if len(graphs) < 2:
            return graphs  # one graph: it is both the training and the test set
        test = [g for i, g in enumerate(graphs) if i % 5 == 0]
        train = [g for i, g in enumerate(graphs) if i % 5 != 0]
        return train if split == "train" else test
    graph = read_graph_file(path, attributes, counts)
    counts.note(str(path))
    return [graph]


def build_dataset(source: str | Path, config: Mapping[str, Any], split: str) -> GraphSet:
    """``split``: ``"train"``, ``"test"``, or ``"validation"`` -- the last ``data.validation``
    graphs of the training split, which ``"train"`` then leaves out (settings are chosen on them,
    never on the test split)."""
    data = config.get("data") or {}
    attributes = list(data.get("node_attributes") or [])
    held = int(data.get("validation", 0) or 0)
    source = str(source)
    base_split = "train" if split == "validation" else split
    if source in BUILTINS:
        if attributes:
            raise DataError(f"{source}: built-in graphs have no node attributes (data.node_attributes = {attributes})")
        graphs = builtin_graphs(source, int(data.get("seed", 0)))
        picked = [graphs[i] for i in split_indices(source, len(graphs), base_split)]
    else:
        picked = _user_graphs(source, attributes, base_split)
    if held and base_split == "train":
        if not 0 < held < len(picked):
            raise DataError(f"{source}: data.validation = {held} must leave training graphs (the training split has {len(picked)})")
        picked = picked[-held:] if split == "validation" else picked[:-held]
    elif split == "validation":
        raise DataError(f"{source}: the validation split needs data.validation > 0")
    return GraphSet(picked, 1 + len(attributes), source)
