"""The score network: equivariance under node permutations, padding, the noise space."""

import pytest
import torch
from polydiff_graphs import modality
from polydiff_graphs.graphs import collate
from polydiff_graphs.network import GraphScoreNet

from polydiff import hooks
from polydiff.config import resolve
from polydiff.state import randn_like_state


def _batch():
    ds = modality.build_dataset("community-small", resolve(modality), "test")
    return collate([ds[0], ds[1], ds[2]])


def _noisy(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    space = hooks.noise_space(modality, resolve(modality))
    noise = space.project(randn_like_state(batch.x, generator=g), batch.mask)
    return {k: batch.x[k] + 0.7 * noise[k] for k in batch.x}


def test_permutation_equivariance():
    torch.manual_seed(0)
    net = GraphScoreNet(hidden=16, edge_hidden=8, layers=2, heads=2, powers=3).double()
    for p in net.parameters():  # the zero-initialised output layers would make this trivial
        torch.nn.init.normal_(p, std=0.3)
    batch = _batch()
    x = {k: v.double() for k, v in _noisy(batch).items()}
    c = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    out = net(x, c)
    n = int(batch.mask["nodes"][0].sum())  # permute the valid nodes of the first graph
    perm = torch.arange(x["nodes"].shape[1])
    perm[:n] = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    xp = {"nodes": x["nodes"][:, perm], "adjacency": x["adjacency"][:, perm][:, :, perm]}
    outp = net(xp, c)
    assert out["adjacency"].abs().max() > 1e-3
    torch.testing.assert_close(outp["nodes"][0], out["nodes"][0][perm])
    torch.testing.assert_close(outp["adjacency"][0], out["adjacency"][0][perm][:, perm])
    a = out["adjacency"]
    torch.testing.assert_close(a, a.transpose(1, 2))
    assert (a.diagonal(dim1=1, dim2=2) == 0).all()


def test_padding_does_not_change_a_graph():
    torch.manual_seed(0)
    net = GraphScoreNet(hidden=16, edge_hidden=8, layers=2, heads=2).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    batch = _batch()
    x = {k: v.double() for k, v in _noisy(batch).items()}
    n = int(batch.mask["nodes"][1].sum())
    alone = {"nodes": x["nodes"][1:2, :n], "adjacency": x["adjacency"][1:2, :n, :n]}
    c = torch.tensor([0.2], dtype=torch.float64)
    out_alone = net(alone, c)
    out_batch = net(x, c.repeat(3))
    torch.testing.assert_close(out_batch["adjacency"][1, :n, :n], out_alone["adjacency"][0])
    assert (out_batch["adjacency"][1, n:] == 0).all() and (out_batch["nodes"][1, n:] == 0).all()


def test_noise_is_symmetric_hollow_with_half_variance():
    batch = _batch()
    space = hooks.noise_space(modality, resolve(modality))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([space.project(randn_like_state(batch.x, generator=g), batch.mask)["adjacency"] for _ in range(400)])
    adj = draws[:, 0]
    n = int(batch.mask["nodes"][0].sum())
    torch.testing.assert_close(adj, adj.transpose(1, 2))
    assert (adj.diagonal(dim1=1, dim2=2) == 0).all() and (draws[:, :, :, n:][:, 0] == 0).all()
    off = adj[:, :n, :n][:, ~torch.eye(n, dtype=torch.bool)]
    assert abs(off.var().item() - 0.5) < 0.03  # off-diagonal entries carry variance 1/2
    dims = space.dims(batch.x, batch.mask)
    sizes = batch.mask["nodes"].sum(1)
    torch.testing.assert_close(dims, sizes * (sizes - 1) / 2 + sizes)  # pairs + one feature per node


def test_soft_features_with_size_embedding_are_equivariant_and_use_the_node_counts():
    torch.manual_seed(0)
    net = GraphScoreNet(hidden=16, edge_hidden=8, layers=2, heads=2, features="soft", size_embedding=True).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    batch = _batch()
    x = {k: v.double() for k, v in _noisy(batch).items()}
    c = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    counts = batch.mask["nodes"].sum(1).long()
    out = net(x, c, nodes=counts)
    # the counts give the same mask the input's zeros do
    torch.testing.assert_close(out["adjacency"], net(x, c)["adjacency"])
    n = int(counts[0])
    perm = torch.arange(x["nodes"].shape[1])
    perm[:n] = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    xp = {"nodes": x["nodes"][:, perm], "adjacency": x["adjacency"][:, perm][:, :, perm]}
    outp = net(xp, c, nodes=counts)
    assert out["adjacency"].abs().max() > 1e-3
    torch.testing.assert_close(outp["adjacency"][0], out["adjacency"][0][perm][:, perm])
    torch.testing.assert_close(outp["nodes"][0], out["nodes"][0][perm])


def test_soft_adjacency_is_the_posterior_edge_probability():
    from polydiff_graphs.defaults import ADJ_SCALE

    net = GraphScoreNet(features="soft", sigma_data=1.0).double()
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    raw = torch.tensor([[[0.0, 0.3], [0.3, 0.0]], [[0.0, -1.1], [-1.1, 0.0]]], dtype=torch.float64)
    x_in = raw / torch.sqrt(sigma**2 + 1)[:, None, None]
    p = net.soft_adjacency(x_in, sigma.log() / 4)
    # two hypotheses +-a with Gaussian noise of variance sigma^2 / 2 each: Bayes by hand
    a, var = ADJ_SCALE, (sigma**2 / 2)[:, None, None]
    like_edge = torch.exp(-((raw - a) ** 2) / (2 * var))
    like_none = torch.exp(-((raw + a) ** 2) / (2 * var))
    torch.testing.assert_close(p, like_edge / (like_edge + like_none))


def test_reach_is_zero_across_unjoined_parts_and_the_pagerank_closed_form():
    from polydiff_graphs.network import reach

    a = torch.zeros(1, 7, 7, dtype=torch.float64)  # two triangles, then a padded node
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
        a[0, i, j] = a[0, j, i] = 1.0
    apart = reach(a, 0.9)
    assert apart[0, :3, 3:6].abs().max() == 0  # no walk crosses: exactly 0
    # a triangle alone: D^-1/2 A D^-1/2 = (J - I) / 2, so the proximity is solvable by hand
    d = 2 + 1e-3
    tri = (1 - 0.9) * torch.linalg.inv(torch.eye(3, dtype=torch.float64) - 0.9 * (a[0, :3, :3] / d))
    torch.testing.assert_close(apart[0, :3, :3], tri)
    assert apart[0, 6, 6] == pytest.approx(0.1) and apart[0, 6, :6].abs().max() == 0  # padding
    joined = a.clone()
    joined[0, 2, 3] = joined[0, 3, 2] = 1.0
    assert (reach(joined, 0.9)[0, :3, 3:6] > 1e-3).all()  # one bridge reaches every cross pair


def test_reach_channel_is_equivariant_and_differentiable():
    torch.manual_seed(0)
    net = GraphScoreNet(hidden=16, edge_hidden=8, layers=2, heads=2, reach=0.9).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    batch = _batch()
    x = {k: v.double().requires_grad_(True) for k, v in _noisy(batch).items()}
    c = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    out = net(x, c)
    n = int(batch.mask["nodes"][0].sum())
    perm = torch.arange(x["nodes"].shape[1])
    perm[:n] = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    xp = {"nodes": x["nodes"][:, perm], "adjacency": x["adjacency"][:, perm][:, :, perm]}
    outp = net(xp, c)
    torch.testing.assert_close(outp["adjacency"][0], out["adjacency"][0][perm][:, perm])
    # likelihoods differentiate the network in its input: the solve keeps that finite
    grad = torch.autograd.grad(out["adjacency"].sum(), x["adjacency"])[0]
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    with pytest.raises(ValueError, match="model.reach"):
        GraphScoreNet(reach=1.0)
    from polydiff_graphs.network import build_network

    from polydiff.errors import UserError

    with pytest.raises(UserError, match=r"model.reach = 1.5: expected \[0, 1\)"):
        build_network(resolve(modality, overrides={"model": {"reach": 1.5}}))
    assert build_network(resolve(modality, overrides={"model": {"reach": 0.5}})).reach == 0.5
