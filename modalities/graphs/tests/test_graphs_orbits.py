"""Orbit counts against hand-counted graphs and the independent ORCA port (test-only oracle)."""

import networkx as nx
import numpy as np
import pytest
from polydiff_graphs.orbits import orbit_counts


def test_hand_counted_graphs():
    k4 = orbit_counts(nx.complete_graph(4))
    assert (k4[:, 0] == 3).all() and (k4[:, 3] == 3).all() and (k4[:, 14] == 1).all()
    assert k4[:, [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]].sum() == 0
    star = orbit_counts(nx.star_graph(3))  # centre 0, leaves 1..3
    assert star[0, 7] == 1 and (star[1:, 6] == 1).all() and star[0, 2] == 3 and (star[1:, 1] == 2).all()
    path = orbit_counts(nx.path_graph(4))
    assert path[:, 4].tolist() == [1, 0, 0, 1] and path[:, 5].tolist() == [0, 1, 1, 0]
    paw = nx.Graph([(0, 1), (1, 2), (0, 2), (2, 3)])
    c = orbit_counts(paw)
    assert c[3, 9] == 1 and c[0, 10] == c[1, 10] == 1 and c[2, 11] == 1
    diamond = orbit_counts(nx.Graph([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]))
    assert diamond[:, 12].tolist() == [0, 1, 0, 1] and diamond[:, 13].tolist() == [1, 0, 1, 0]
    assert (orbit_counts(nx.cycle_graph(4))[:, 8] == 1).all()


@pytest.mark.parametrize("seed", range(12))
def test_against_orca(seed):
    orca = pytest.importorskip("orca", reason="orca-graphlets (the test extra) is the oracle")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 13))
    g = nx.gnp_random_graph(n, float(rng.uniform(0.15, 0.7)), seed=seed)
    edges = np.array(list(g.edges), dtype=np.int64).reshape(-1, 2)
    expected = np.asarray(orca.orca_nodes(edges, n, 4))
    np.testing.assert_array_equal(orbit_counts(g), expected)
