"""The point transformer: permutation equivariance, ragged batches, chunked k-NN."""

import torch
from polydiff_points.network import PointTransformer, knn


def _net():
    torch.manual_seed(0)
    net = PointTransformer(width=16, blocks=2, k=6, knn_chunk=7, groups=4, latents=3, heads=2)
    # zero-initialised layers (the output, the noise modulation) would make every test pass
    zeroed = [net.out, *(b.modulation for b in net.blocks)]
    for p in (p for m in zeroed for p in m.parameters()):
        torch.nn.init.normal_(p, std=0.5)
    return net.eval()


def test_knn_chunked_matches_brute_force():
    x = torch.randn(2, 30, 3, generator=torch.Generator().manual_seed(1))
    d = torch.cdist(x, x)
    expected = d.argsort(-1)[..., :5]
    assert torch.equal(knn(x, None, 5, chunk=7).sort(-1).values, expected.sort(-1).values)


def test_knn_ignores_padding():
    x = torch.randn(1, 10, 3)
    mask = torch.ones(1, 10)
    mask[0, 7:] = 0
    idx = knn(x, mask, 4, chunk=3)
    assert int(idx.max()) < 7


def test_output_permutes_with_the_input():
    net = _net()
    x = torch.randn(3, 40, 3, generator=torch.Generator().manual_seed(2))
    c = torch.tensor([-1.0, 0.0, 0.7])
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = net(x, c)
        out_p = net(x[:, perm], c)
    assert out.abs().max() > 1e-3
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_valid_points():
    net = _net()
    x = torch.randn(1, 25, 3, generator=torch.Generator().manual_seed(4))
    padded = torch.zeros(2, 40, 3)
    padded[0, :25] = x[0]
    padded[1] = torch.randn(40, 3)
    valid = torch.zeros(2, 40)
    valid[0, :25] = 1
    valid[1] = 1
    with torch.no_grad():
        alone = net(x, torch.zeros(1))
        batched = net(padded, torch.zeros(2), valid=valid)
    torch.testing.assert_close(batched[0, :25], alone[0], atol=1e-5, rtol=1e-5)
    assert float(batched[0, 25:].abs().max()) == 0.0


def test_noise_level_changes_the_output():
    net = _net()
    x = torch.randn(1, 20, 3)
    with torch.no_grad():
        assert (net(x, torch.tensor([-1.0])) - net(x, torch.tensor([1.0]))).abs().max() > 1e-4


def _conditional(num_classes=3):
    torch.manual_seed(0)
    net = PointTransformer(width=16, blocks=1, k=6, groups=4, num_classes=num_classes)
    for m in (net.out, net.label, *(b.modulation for b in net.blocks)):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.5)
    return net.eval()


def test_the_label_conditions_and_minus_one_means_none():
    net = _conditional()
    x, c = torch.randn(2, 20, 3), torch.zeros(2)
    with torch.no_grad():
        a, b = net(x, c, label=torch.tensor([0, 0])), net(x, c, label=torch.tensor([1, 1]))
        null, none = net(x, c, label=torch.tensor([-1, -1])), net(x, c)
        both = net(x, c, label=torch.tensor([0, -1]))
    assert (a - b).abs().max() > 1e-4
    # the null row is learned (condition dropout) and differs from every class; no label at all
    # is the unconditional model too, row by row within a batch
    assert (null - a).abs().max() > 1e-4
    torch.testing.assert_close(none, null)
    torch.testing.assert_close(both, torch.stack([a[0], null[1]]))

