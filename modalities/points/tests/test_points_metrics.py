"""The PointFlow metrics against hand-computed values on tiny sets."""

import numpy as np
import pytest
import torch
from polydiff_points.metrics import (
    chamfer_matrix,
    chamfer_pair,
    cov_mmd,
    emd_approx,
    emd_exact,
    emd_matrix,
    jsd,
    one_nn_accuracy,
    pointflow_metrics,
)


def test_chamfer_by_hand():
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    y = torch.tensor([[[0.0, 0, 0], [0, 2, 0], [3, 0, 0]]])
    # x -> y: 0, 1 (squared); y -> x: 0, 4, 4 (|(0,2)-(0,0)|^2 = 4, |(3,0)-(1,0)|^2 = 4)
    expected = (0 + 1) / 2 + (0 + 4 + 4) / 3
    assert float(chamfer_pair(x, y)) == pytest.approx(expected)
    m = chamfer_matrix(torch.cat([x, x]), y, batch=1)
    assert m.shape == (2, 1) and torch.allclose(m, torch.full((2, 1), expected, dtype=m.dtype))


def test_emd_exact_by_hand():
    x = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    y = torch.tensor([[1.0, 0, 1], [0, 0, 1]])
    # the best matching pairs points straight up: distance 1 each (crossing gives sqrt 2 each)
    assert emd_exact(x, y) == pytest.approx(1.0)
    y2 = torch.tensor([[3.0, 4, 0], [1, 0, 0]])
    assert emd_exact(x, y2) == pytest.approx((5 + 0) / 2)  # not the squared distances
    with pytest.raises(ValueError, match="equal size"):
        emd_exact(x, y2[:1])


def test_chamfer_matrix_agrees_with_brute_force():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(3, 50, 3, generator=g), torch.randn(4, 60, 3, generator=g)
    brute = torch.tensor([[float(chamfer_pair(x[None], y[None])) for y in b] for x in a], dtype=torch.float64)
    torch.testing.assert_close(chamfer_matrix(a, b), brute, rtol=1e-5, atol=1e-7)
    self_brute = torch.tensor([[float(chamfer_pair(x[None], y[None])) for y in a] for x in a], dtype=torch.float64)
    m = chamfer_matrix(a)
    # float32 cdist leaves ~1e-7 on the diagonal; the k-d trees' float64 distances are exact
    assert torch.equal(m.diagonal(), torch.zeros(3, dtype=m.dtype))
    torch.testing.assert_close(m, self_brute, rtol=1e-5, atol=1e-6)


def test_approximate_emd_agrees_with_the_exact_emd():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 300, 3, generator=g), torch.randn(4, 300, 3, generator=g)
    b[2:] = b[2:] * torch.tensor([2.0, 0.3, 0.3]) + 1.0  # dissimilar shapes: long-range pairs
    exact = torch.tensor([emd_exact(x, y) for x, y in zip(a, b, strict=True)])
    approx = torch.tensor([emd_approx(x, y) for x, y in zip(a, b, strict=True)])
    # a feasible matching: never below the optimum, and within a few per cent of it
    assert bool((approx >= exact - 1e-9).all()) and bool((approx <= exact * 1.05).all()), (approx, exact)
    # with every pair a candidate the sparse assignment is the exact one
    assert emd_approx(a[0], b[0], k=300) == pytest.approx(emd_exact(a[0], b[0]), rel=1e-9)
    # the matrix: its halves computed once, the same values
    m = emd_matrix(a[:3], None, exact=False)
    assert float(m[0, 2]) == pytest.approx(emd_approx(a[0], a[2])) and torch.equal(m, m.t())
    with pytest.raises(ValueError, match="equal size"):
        emd_approx(a[0], b[0, :10])


def test_cov_mmd_by_hand():
    # 3 samples x 2 references
    m_sr = torch.tensor([[1.0, 5.0], [2.0, 6.0], [0.5, 7.0]])
    cov, mmd = cov_mmd(m_sr)
    assert cov == pytest.approx(0.5)  # every sample's nearest reference is reference 0
    assert mmd == pytest.approx((0.5 + 5.0) / 2)  # each reference's nearest sample, averaged


def test_one_nn_accuracy_by_hand():
    # two well-separated sets: every cloud's nearest neighbour is in its own set -> 100 %
    m_rr = torch.tensor([[0.0, 1], [1, 0]])
    m_ss = torch.tensor([[0.0, 1], [1, 0]])
    m_rs = torch.full((2, 2), 10.0)
    assert one_nn_accuracy(m_rr, m_rs, m_ss) == 1.0
    # each reference has a sample twin: all four nearest neighbours cross over -> 0 %
    m_rs = torch.tensor([[0.1, 10], [10, 0.1]])
    assert one_nn_accuracy(m_rr, m_rs, m_ss) == 0.0
    # mixed: r0's twin is s0, r1 is far from every sample -> r0, s0 wrong; r1 -> r0 right; s1 -> s0 right
    m_rs = torch.tensor([[0.1, 10], [10, 10]])
    assert one_nn_accuracy(m_rr, m_rs, m_ss) == 0.5


def test_jsd_bounds():
    rng = np.random.default_rng(0)
    a = [rng.uniform(-0.3, 0.3, (200, 3)) for _ in range(3)]
    assert jsd(a, a, scale=1.0) == pytest.approx(0.0, abs=1e-12)
    left = [np.full((10, 3), -0.25)]
    right = [np.full((10, 3), 0.25)]
    assert jsd(left, right, scale=1.0) == pytest.approx(1.0)  # disjoint cells: 1 bit


def test_suite_on_identical_sets():
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(6, 32, 3, generator=g) * 0.3
    out = pointflow_metrics(refs.clone(), refs, emd="exact")
    assert out["MMD-CD"] == pytest.approx(0, abs=1e-6) and out["MMD-EMD"] == pytest.approx(0, abs=1e-12)
    assert out["COV-CD"] == 1 and out["COV-EMD"] == 1
    assert out["1-NNA-CD"] == 0 and out["1-NNA-EMD"] == 0  # every nearest neighbour is the twin
    assert out["JSD"] == pytest.approx(0, abs=1e-12)


def test_a_shared_reference_matrix_gives_the_same_scores():
    g = torch.Generator().manual_seed(1)
    refs, samples = torch.randn(2, 7, 24, 3, generator=g)
    fresh = pointflow_metrics(samples, refs, emd="off")
    shared = pointflow_metrics(samples, refs, emd="off", cd_refs=chamfer_matrix(refs))
    assert shared == fresh
    wrong = pointflow_metrics(samples, refs, emd="off", cd_refs=torch.zeros(7, 7))
    assert wrong["1-NNA-CD"] != fresh["1-NNA-CD"]  # the matrix given is the one used


def test_box_protocol_normalises_samples_like_the_references():
    """Under box normalisation the samples go through the references' per-shape normalisation
    (DPM/LION's protocol), so a reference grown by 30 % and moved is its twin again; under global
    normalisation size and offset are the model's to get right and stay in the score."""
    from polydiff_points.evaluation import as_references, pointflow, references

    cfg = {"data": {"dataset": "shapes", "train_per_class": 2, "test_per_class": 1, "num_points": 64}}
    refs, _, _ = references(cfg, 8)
    moved = refs * 1.3 + torch.tensor([0.2, -0.1, 0.05])
    assert chamfer_pair(moved, refs).min() > 1e-2
    assert chamfer_pair(as_references(moved, cfg), refs).max() < 1e-6  # float32 rounding
    out = pointflow(moved, cfg)
    assert out["MMD-CD"] < 1e-6 and out["1-NNA-CD"] == 0 and "box protocol" in out["samples"]
    glob = {"data": {**cfg["data"], "normalize": "global"}}
    assert torch.equal(as_references(moved, glob), moved)
    assert pointflow(moved, glob)["MMD-CD"] > 1e-3
