"""Noise spaces: projections, dimension counts, exact likelihoods in the subspace, samples in it."""

import math

import pytest
import torch
from toy_spaces import STD, ToyClouds, ToyGraphs, exact_denoiser

from polydiff import hooks
from polydiff.config import resolve
from polydiff.generate import generate
from polydiff.likelihood import log_likelihood
from polydiff.noise_space import FULL, PerKey, SymmetricHollow, ZeroMean
from polydiff.sde import EDM
from polydiff.state import MaskError, leaves, pack, pair_mask


def _batch(modality, n=4):
    cfg = modality.default_config()
    ds = modality.build_dataset("gauss", cfg, "train")
    return modality.collate([ds[i] for i in range(n)]), cfg


def _inner(a, b):
    return sum((x * y).sum() for x, y in zip(leaves(a), leaves(b), strict=True))


@pytest.mark.parametrize("modality", [ToyClouds(), ToyGraphs()], ids=["clouds", "graphs"])
def test_projection_is_orthogonal_idempotent_and_zero_when_padded(modality):
    batch, cfg = _batch(modality)
    space = hooks.noise_space(modality, cfg)
    g = torch.Generator().manual_seed(0)
    z = {k: torch.randn(v.shape, generator=g) for k, v in batch.x.items()} if isinstance(batch.x, dict) else torch.randn(batch.x.shape, generator=g)
    w = {k: torch.randn(v.shape, generator=g) for k, v in batch.x.items()} if isinstance(batch.x, dict) else torch.randn(batch.x.shape, generator=g)
    pz = space.project(z, batch.mask)
    for a, b in zip(leaves(space.project(pz, batch.mask)), leaves(pz), strict=True):
        torch.testing.assert_close(a, b)
    # orthogonal: the residual w - Pw is orthogonal to every projected vector (on valid entries)
    pw = space.project(w, batch.mask)
    flat_pz, _ = pack(pz)
    flat_res = pack(w)[0] - pack(pw)[0]
    valid = (flat_pz != 0) | (pack(pw)[0] != 0)
    assert abs(float((flat_pz * flat_res * valid).sum())) < 1e-4
    assert _inner(pz, pz) > 0


def test_dimension_counts():
    clouds, cfg = _batch(ToyClouds())
    n_valid = clouds.mask.sum(1)
    torch.testing.assert_close(ZeroMean().dims(clouds.x, clouds.mask), 3 * (n_valid - 1))
    graphs, _ = _batch(ToyGraphs())
    nodes = graphs.mask["nodes"].sum(1)
    space = PerKey({"adjacency": SymmetricHollow()})
    torch.testing.assert_close(space.dims(graphs.x, graphs.mask), 2 * nodes + nodes * (nodes - 1) / 2)
    assert float(FULL.dims(torch.zeros(2, 3, 4), None)[0]) == 12


def test_a_node_mask_on_pair_data_is_refused():
    adj = torch.zeros(2, 5, 5)
    with pytest.raises(MaskError, match="pair_mask"):
        SymmetricHollow().project(adj, torch.ones(2, 5))
    out = SymmetricHollow().project(torch.randn(2, 5, 5), pair_mask(torch.ones(2, 5)))
    torch.testing.assert_close(out, out.transpose(1, 2))
    assert float(out.diagonal(dim1=1, dim2=2).abs().max()) == 0


@pytest.mark.parametrize("modality", [ToyClouds(), ToyGraphs()], ids=["clouds", "graphs"])
def test_exact_gaussian_log_likelihood_in_the_subspace(modality):
    batch, cfg = _batch(modality, n=3)
    space = hooks.noise_space(modality, cfg)
    sde = EDM()
    var = STD**2 + sde.sigma_min**2  # the likelihood reads x as x at sigma_min
    k = space.dims(batch.x, batch.mask)
    sq = sum((v.reshape(v.shape[0], -1) ** 2).sum(1) for v in leaves(batch.x))
    exact = -0.5 * sq / var - 0.5 * k * math.log(2 * math.pi * var)
    denoiser = exact_denoiser(space, batch.mask)
    res = log_likelihood(denoiser, sde, batch.x, mask=batch.mask, noise_space=space, estimator="exact", rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(res.dims, k.to(res.dims.dtype))
    rel = ((res.logp - exact).abs() / exact.abs()).max()
    assert rel < 0.01, (res.logp, exact)
    # the same denoiser without the space counts every valid entry: a different, wrong number
    wrong = log_likelihood(denoiser, sde, batch.x, mask=batch.mask, estimator="exact")
    assert ((wrong.logp - exact).abs() / exact.abs()).max() > 0.05


@pytest.mark.parametrize("sampler", ["euler", "heun", "euler_maruyama", "dpmpp_2m", "ddpm"])
@pytest.mark.parametrize("modality", [ToyClouds(), ToyGraphs()], ids=["clouds", "graphs"])
def test_samples_stay_in_the_subspace(modality, sampler):
    cfg = resolve(modality)
    space = hooks.noise_space(modality, cfg)

    def denoiser(x, sigma):  # a net that ignores the space: the core must project its output
        return {k: v * 0.9 + 0.1 for k, v in x.items()} if isinstance(x, dict) else x * 0.9 + 0.1

    x, layout, _ = generate(modality, cfg, denoiser, n=6, sampler=sampler, steps=4)
    for a, b in zip(leaves(space.project(x, layout.mask)), leaves(x), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    if isinstance(x, dict):
        adj = x["adjacency"]
        assert float((adj - adj.transpose(1, 2)).abs().max()) == 0
    else:
        mean = x.sum(1) / layout.mask.sum(1, keepdim=True)
        assert float(mean.abs().max()) < 1e-5
