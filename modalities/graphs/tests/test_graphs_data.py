"""The built-in recipes (sizes, edge probabilities, splits), user files and malformed files."""

import json
import warnings

import networkx as nx
import numpy as np
import pytest
import torch
from polydiff_graphs import modality
from polydiff_graphs.datasets import builtin_graphs, split_indices
from polydiff_graphs.defaults import ADJ_SCALE

from polydiff.config import resolve
from polydiff.protocol import DataError

CFG = resolve(modality)


def _nx(name):
    return [g.to_networkx() for g in builtin_graphs(name, 0)]


def test_community_small_recipe():
    graphs = _nx("community-small")
    assert len(graphs) == 100
    sizes = [g.number_of_nodes() for g in graphs]
    assert set(sizes) == {12, 14, 16, 18, 20}
    bridges = nodes = 0
    intra_edges = intra_pairs = 0
    for g in graphs:
        half = g.number_of_nodes() // 2
        inside = nx.Graph((u, v) for u, v in g.edges if (u < half) == (v < half))
        # the generator's communities: G(half, 0.7) seeded with 0 and 1
        first = nx.gnp_random_graph(half, 0.7, seed=0)
        assert {tuple(sorted(e)) for e in inside.edges if e[0] < half} == {tuple(sorted(e)) for e in first.edges}
        cross = g.number_of_edges() - inside.number_of_edges()
        assert cross >= 1
        bridges += cross
        nodes += 2 * half
        intra_edges += inside.number_of_edges()
        intra_pairs += half * (half - 1)
    # 0.05 bridges per node expected (plus the forced one when none was drawn): 1.0 per graph
    assert 0.04 < bridges / nodes < 0.085
    assert abs(intra_edges / intra_pairs - 0.7) < 0.08  # seeded draws, so only near 0.7


def test_grid_recipe():
    graphs = _nx("grid")
    assert len(graphs) == 100
    assert sorted(g.number_of_nodes() for g in graphs)[0] == 100
    assert max(g.number_of_nodes() for g in graphs) == 361
    g = graphs[0]  # 10 x 10: 2 * 10 * 9 edges
    assert g.number_of_edges() == 180 and max(d for _, d in g.degree) == 4


def test_planar_recipe():
    graphs = _nx("planar")
    assert len(graphs) == 200
    assert {g.number_of_nodes() for g in graphs} == {64}
    for g in graphs[:20]:
        assert nx.is_connected(g) and nx.check_planarity(g)[0]
        # a triangulation of n points with h on the hull has 3n - 3 - h edges
        assert 3 * 64 - 3 - 20 <= g.number_of_edges() <= 3 * 64 - 6


def test_sbm_recipe():
    from networkx.algorithms.community import louvain_communities

    graphs = _nx("sbm")
    assert len(graphs) == 200
    assert all(40 <= g.number_of_nodes() <= 200 for g in graphs)
    # blocks are unknown to the data, so estimate probabilities on graphs of 2 blocks recovered
    # by their connected structure: edges ~ 0.3 * intra pairs + 0.005 * cross pairs
    e_in = p_in = e_out = p_out = 0
    for g in graphs[:30]:
        blocks = louvain_communities(g, seed=0)
        label = {v: i for i, b in enumerate(blocks) for v in b}
        sizes = [len(b) for b in blocks]
        p_in += sum(s * (s - 1) / 2 for s in sizes)
        p_out += (sum(sizes) ** 2 - sum(s * s for s in sizes)) / 2
        for u, v in g.edges:
            if label[u] == label[v]:
                e_in += 1
            else:
                e_out += 1
    assert abs(e_in / p_in - 0.3) < 0.03
    assert e_out / p_out < 0.012


def test_splits_are_disjoint_and_the_papers():
    assert split_indices("community-small", 100, "test") == list(range(20))
    assert split_indices("grid", 100, "train") == list(range(20, 100))
    train, test = split_indices("planar", 200, "train"), split_indices("planar", 200, "test")
    assert (len(train), len(test)) == (128, 40) and not set(train) & set(test)


def test_items_follow_the_encoding():
    ds = modality.build_dataset("community-small", CFG, "train")
    item = ds[0]
    adj, nodes = item["x"]["adjacency"], item["x"]["nodes"]
    n = nodes.shape[0]
    assert item["cond"]["nodes"] == n and adj.shape == (n, n)
    assert (adj == adj.T).all() and (adj.diagonal() == 0).all()
    off = adj[~np.eye(n, dtype=bool)]
    assert torch.allclose(off.abs(), torch.full_like(off, ADJ_SCALE))
    assert int((adj > 0).sum()) == 2 * ds.graphs[0].edges.shape[0]


def _cfg(**data):
    cfg = resolve(modality)
    cfg["data"].update(data)
    return cfg


def test_graphml_gml_and_edge_lists(tmp_path):
    g = nx.cycle_graph(5)
    nx.set_node_attributes(g, {i: float(i) for i in g}, "w")
    nx.write_graphml(g, tmp_path / "a.graphml")
    nx.write_gml(g, tmp_path / "b.gml")
    (tmp_path / "c.edgelist").write_text("0 1\n1 2\n# comment\n2 3\n")
    ds = modality.build_dataset(str(tmp_path / "a.graphml"), _cfg(node_attributes=["w"]), "train")
    assert ds[0]["x"]["nodes"].shape == (5, 2) and ds[0]["x"]["nodes"][:, 1].tolist() == [0, 1, 2, 3, 4]
    folder = modality.build_dataset(str(tmp_path), _cfg(), "train")
    test = modality.build_dataset(str(tmp_path), _cfg(), "test")
    assert len(folder) + len(test) == 3 and len(test) == 1
    assert sorted(g.n for g in folder.graphs + test.graphs) == [4, 5, 5]


def test_normalisations_are_counted(tmp_path):
    path = tmp_path / "loops.edgelist"
    path.write_text("0 1\n1 0\n1 1\n1 2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = modality.build_dataset(str(path), _cfg(), "train")
    assert ds.graphs[0].edges.tolist() == [[0, 1], [1, 2]]
    text = " ".join(str(w.message) for w in caught)
    assert "1 self-loops dropped" in text and "1 repeated edges merged" in text
    multi = nx.MultiDiGraph([(0, 1), (0, 1), (1, 2)])
    nx.write_graphml(multi, tmp_path / "m.graphml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = modality.build_dataset(str(tmp_path / "m.graphml"), _cfg(), "train")
    assert ds.graphs[0].edges.shape == (2, 2)
    assert "1 directed graphs made undirected" in str(caught[0].message)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.graphml", "<graphml><graph><node id='a'/>", "malformed graphml"),
        ("bad.gml", "graph [ node [ id 0 ", "malformed gml"),
        ("empty.gml", "graph [ ]", "no nodes"),
        ("bad.edgelist", "0 1\n7\n", "line 2"),
        ("empty.edgelist", "# nothing\n", "no nodes"),
        ("bad.json", "{not json", "not valid JSON"),
        ("odd.json", json.dumps({"graphs": [{"num_nodes": 2, "edges": [[0, 5]]}] * 5}), "outside"),
        ("x.csv", "0,1\n", "unknown graph format"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as info:
        modality.build_dataset(str(path), _cfg(), "train")
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_or_non_numeric_attributes(tmp_path):
    g = nx.path_graph(3)
    nx.set_node_attributes(g, {0: "red", 1: "blue", 2: "red"}, "colour")
    nx.write_graphml(g, tmp_path / "c.graphml")
    with pytest.raises(DataError, match="not a number"):
        modality.build_dataset(str(tmp_path / "c.graphml"), _cfg(node_attributes=["colour"]), "train")
    with pytest.raises(DataError, match="no attribute 'size'"):
        modality.build_dataset(str(tmp_path / "c.graphml"), _cfg(node_attributes=["size"]), "train")
    with pytest.raises(DataError, match="no such file"):
        modality.build_dataset(str(tmp_path / "nothing-here"), _cfg(), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no graph files"):
        modality.build_dataset(str(tmp_path / "empty"), _cfg(), "train")


def test_reference_json_split(tmp_path):
    doc = {"test_count": 2, "graphs": [{"num_nodes": k, "edges": [[0, 1]]} for k in (2, 3, 4, 5, 6)]}
    (tmp_path / "ref.json").write_text(json.dumps(doc))
    test = modality.build_dataset(str(tmp_path / "ref.json"), _cfg(), "test")
    train = modality.build_dataset(str(tmp_path / "ref.json"), _cfg(), "train")
    assert test.node_counts() == [2, 3] and train.node_counts() == [4, 5, 6]


def test_validation_split_is_carved_from_the_training_graphs(tmp_path):
    doc = {"test_count": 2, "graphs": [{"num_nodes": k, "edges": [[0, 1]]} for k in (2, 3, 4, 5, 6, 7)]}
    (tmp_path / "ref.json").write_text(json.dumps(doc))
    cfg = resolve(modality, overrides={"data": {"validation": 1}})
    src = str(tmp_path / "ref.json")
    assert modality.build_dataset(src, cfg, "train").node_counts() == [4, 5, 6]
    assert modality.build_dataset(src, cfg, "validation").node_counts() == [7]
    assert modality.build_dataset(src, cfg, "test").node_counts() == [2, 3]
    with pytest.raises(DataError, match="data.validation"):
        modality.build_dataset(src, _cfg(), "validation")
    with pytest.raises(DataError, match="must leave training graphs"):
        modality.build_dataset(src, resolve(modality, overrides={"data": {"validation": 4}}), "train")
