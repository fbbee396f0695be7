"""Sample quality: MMDs under both protocols with the train-vs-test floor, validity for planar and
SBM graphs, uniqueness and novelty by isomorphism.

SBM validity (after SPECTRE, without graph-tool): the blocks are recovered with Louvain modularity
communities (networkx, seeded; resolutions 1, 0.7, 0.5, 0.3 in turn, the first partition of
the allowed shape kept); a graph is an SBM graph when it has 2-5 blocks of 20-40 nodes and
the estimated edge probabilities pass a Wald test against the generating ones: for each block
(p = 0.3) and each pair of blocks (p = 0.005), W = (p_hat - p)^2 / (p_hat (1 - p_hat) + 1e-6),
its p-value under chi^2(1), and the mean p-value over blocks and block pairs above 0.9. This is
SPECTRE's statistic (which does not divide by the pair count, so it is lenient by design); keeping
it keeps our V.U.N. comparable with DiGress's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from polydiff_graphs.mmd import DROPS_ISOLATES, PROTOCOLS, STATISTICS, mmd_table, summaries

__all__ = [
    "evaluate_graphs",
    "is_planar_graph",
    "is_sbm_graph",
    "metrics_for_modality",
    "novel_flags",
    "unique_flags",
    "without_isolates",
]


def is_planar_graph(g: nx.Graph) -> bool:
    return g.number_of_nodes() > 0 and nx.is_connected(g) and nx.check_planarity(g)[0]


def is_sbm_graph(g: nx.Graph, p_in: float = 0.3, p_out: float = 0.005, seed: int = 0) -> bool:
    from scipy.stats import chi2

    if g.number_of_nodes() == 0 or g.number_of_edges() == 0:
        return False
    # Louvain at resolution 1 sometimes splits a 40-node block: coarser resolutions are tried in
    # turn and the first partition of the allowed shape is tested
    for resolution in (1.0, 0.7, 0.5, 0.3):
        blocks = [sorted(c) for c in nx.community.louvain_communities(g, seed=seed, resolution=resolution)]
        if 2 <= len(blocks) <= 5 and all(20 <= len(b) <= 40 for b in blocks):
            break
    else:
        return False
    label = {v: i for i, b in enumerate(blocks) for v in b}
    k = len(blocks)
    counts = np.zeros((k, k))
    for u, v in g.edges:
        a, b = label[u], label[v]
        counts[a, b] += 1
        if a != b:
            counts[b, a] += 1
    sizes = np.array([len(b) for b in blocks], float)
    pvals = []
    for a in range(k):
        for b in range(a, k):
            pairs = sizes[a] * (sizes[a] - 1) / 2 if a == b else sizes[a] * sizes[b]
            est = counts[a, b] / pairs
            p = p_in if a == b else p_out
            w = (est - p) ** 2 / (est * (1 - est) + 1e-6)
            pvals.append(1 - chi2.cdf(w, 1))
    return float(np.mean(pvals)) > 0.9


def _buckets(graphs: Sequence[nx.Graph]) -> list[str]:
    # the hash only buckets candidates for the exact isomorphism test; networkx >= 3.5 warns
    # that its values changed, which does not matter within one run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return [nx.weisfeiler_lehman_graph_hash(g, iterations=3) for g in graphs]


def unique_flags(graphs: Sequence[nx.Graph]) -> list[bool]:
    """True for each graph not isomorphic to an earlier one."""
    seen: dict[str, list[nx.Graph]] = {}
    flags = []
    for g, h in zip(graphs, _buckets(graphs), strict=True):
        same = any(nx.is_isomorphic(g, o) for o in seen.get(h, []))
        flags.append(not same)
        seen.setdefault(h, []).append(g)
    return flags


def novel_flags(graphs: Sequence[nx.Graph], train: Sequence[nx.Graph]) -> list[bool]:
    """True for each graph isomorphic to no training graph."""
    index: dict[str, list[nx.Graph]] = {}
    for g, h in zip(train, _buckets(train), strict=True):
        index.setdefault(h, []).append(g)
    return [not any(nx.is_isomorphic(g, o) for o in index.get(h, [])) for g, h in zip(graphs, _buckets(graphs), strict=True)]


def without_isolates(g: nx.Graph) -> nx.Graph:
    """``g`` less its isolated nodes, as GDSS scores a sample (one node kept if none is left)."""
    keep = [v for v in g if g.degree(v) > 0]
    if len(keep) == len(g):
        return g
    return g.subgraph(keep).copy() if keep else g.subgraph(list(g)[:1]).copy()


def evaluate_graphs(
    generated: Sequence[nx.Graph],
    test: Sequence[nx.Graph],
    train: Sequence[nx.Graph] | None = None,
    *,
    protocols: Sequence[str] = PROTOCOLS,
    validity: str | None = None,
    floor: bool = True,
    stats: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every number of the tables for one generated set: ``{protocol}/{statistic}`` squared MMDs
    against ``test``; with ``train`` and ``floor``, ``reference/...`` the same for the training
    set (the floor) and ``{protocol}/{statistic}_ratio`` (ours over the floor); ``unique``,
    ``novel`` (needs ``train``), ``connected`` (the share of samples in one piece), and for
    ``validity`` in ("planar", "sbm") ``valid`` and ``vun``.
    ``stats``: the statistics to compare (default all; orbit counting is slow on dense graphs).
    Under a protocol in ``DROPS_ISOLATES`` (GDSS's) the generated graphs' isolated nodes are
    dropped first, as that protocol's code does."""
    if not generated:
        raise ValueError("no generated graphs to evaluate")
    out: dict[str, float] = {}
    stats = tuple(STATISTICS) if stats is None else tuple(stats)
    ref = summaries(test, stats)
    gen = summaries(generated, stats)
    # each protocol scores what its own code would see (mmd.DROPS_ISOLATES)
    stripped = [without_isolates(g) for g in generated]
    gen_stripped = gen if all(len(a) == len(b) for a, b in zip(stripped, generated, strict=True)) \
        else summaries(stripped, stats)
    base = summaries(train, stats) if (train is not None and floor) else None
    for protocol in protocols:
        ours = mmd_table(ref, gen_stripped if protocol in DROPS_ISOLATES else gen, protocol)
        for stat, v in ours.items():
            out[f"{protocol}/{stat}"] = v
        if base is not None:
            for stat, v in mmd_table(ref, base, protocol).items():
                out[f"reference/{protocol}/{stat}"] = v
                out[f"{protocol}/{stat}_ratio"] = ours[stat] / v if v > 0 else float("inf")
    uniq = unique_flags(generated)
    out["unique"] = float(np.mean(uniq))
    nov = novel_flags(generated, train) if train is not None else None
    if nov is not None:
        out["novel"] = float(np.mean(nov))
    if validity in ("planar", "sbm"):
        check = is_planar_graph if validity == "planar" else is_sbm_graph
        valid = [check(g) for g in generated]
        out["valid"] = float(np.mean(valid))
        if nov is not None:
            out["vun"] = float(np.mean([v and u and n for v, u, n in zip(valid, uniq, nov, strict=True)]))
    # every data set here is connected; a model that misses one joining edge shows up here first
    out["connected"] = float(np.mean([g.number_of_nodes() > 0 and nx.is_connected(g) for g in generated]))
    out["nodes_mean"] = float(np.mean([g.number_of_nodes() for g in generated]))
    out["edges_mean"] = float(np.mean([g.number_of_edges() for g in generated]))
    return out


def metrics_for_modality(modality: Any) -> dict[str, Any]:
    def graph_quality(samples: Mapping[str, Any], config: Mapping[str, Any], *, mask: Any = None) -> dict[str, float]:
        """Both protocols' MMDs against the run's test split, the train-vs-test floor, validity
        (planar, sbm), uniqueness and novelty."""
        from polydiff.config import data_source
        from polydiff_graphs.graphs import decode

        source = data_source(config["data"])
        test = modality.build_dataset(source, config, "test").networkx()
        train = modality.build_dataset(source, config, "train").networkx()
        generated = decode(samples, mask)
        validity = source if source in ("planar", "sbm") else None
        return evaluate_graphs(generated, test, train, validity=validity)

    return {"graphs": graph_quality}
