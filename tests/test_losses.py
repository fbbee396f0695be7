"""Denoising score matching against the closed forms of a Gaussian target."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.losses import SIGMA_SAMPLINGS, WEIGHTINGS, DSMLoss
from polydiff.param import broadcast_sigma
from polydiff.sde import EDM, VE, VP, SubVP
from polydiff.state import tree_map

F64 = torch.float64
MU, C = 0.3, 0.5  # x_0 ~ N(MU, C^2 I)



def exact_denoiser(x, sigma, **cond):
    """E[x_0 | x] for x_0 ~ N(MU, C^2 I), with per-sample, per-element or per-key levels."""
    levels = broadcast_sigma(sigma, x)
    return tree_map(lambda v, s: MU + C**2 / (C**2 + s**2) * (v - MU), x, levels)


def _post_var(sigma):
    return C**2 * sigma**2 / (C**2 + sigma**2)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("sde", [EDM(sigma_data=C), VP()], ids=["edm", "vp"])
def test_minimum_expected_loss_at_fixed_levels(weighting, sde):
    """E[loss] = lambda(sigma) C^2 sigma^2 / (C^2 + sigma^2) for the exact denoiser."""
    loss_fn = DSMLoss(sde, weighting=weighting, sigma_data=C, min_snr_gamma=4.0)
    g = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.05, 0.3, 1.0, 5.0], dtype=F64)
    sigma = levels.repeat_interleave(1500)
    x0 = MU + C * torch.randn(len(sigma), 16, generator=g, dtype=F64)
    loss = loss_fn(exact_denoiser, x0, sigma=sigma, generator=g)
    assert loss.shape == (len(sigma),)
    expected = loss_fn.weight(levels) * _post_var(levels)
    torch.testing.assert_close(loss.reshape(4, -1).mean(1), expected, rtol=0.04, atol=0)
    if weighting == "edm":
        torch.testing.assert_close(expected, torch.ones_like(expected))  # unit loss everywhere


def test_weightings_closed_forms():
    sigma = torch.tensor([0.01, 0.3, 2.0, 30.0], dtype=F64)
    edm = EDM()
    assert torch.allclose(DSMLoss(edm, "simple").weight(sigma), sigma**-2)
    assert torch.allclose(
        DSMLoss(edm, "edm", sigma_data=0.5).weight(sigma), (sigma**2 + 0.25) / (0.5 * sigma) ** 2
    )
    snr = DSMLoss(edm, "min_snr", min_snr_gamma=5.0).weight(sigma)
    assert torch.allclose(snr, torch.minimum(sigma**-2, torch.tensor(5.0, dtype=F64)))
    # likelihood: (d sigma^2/dt) / sigma^4 -> EDM 2/sigma^3, VE 2 log(smax/smin)/sigma^2
    assert torch.allclose(DSMLoss(edm, "likelihood").weight(sigma), 2 / sigma**3)
    ve = VE(sigma_min=0.01, sigma_max=50)
    assert torch.allclose(DSMLoss(ve, "likelihood").weight(sigma), 2 * math.log(5000) / sigma**2)
    # VP: g^2 = beta in scaled coordinates; g^2 / (s^2 sigma^4) on the x_0-error
    vp = VP()
    t = vp.sigma_inv(sigma)
    lam = vp.beta(t) / (vp.scale(t) ** 2 * sigma**4)
    assert torch.allclose(DSMLoss(vp, "likelihood").weight(sigma), lam)
    with pytest.raises(ValueError, match="available"):
        DSMLoss(edm, "nope")
    with pytest.raises(ValueError, match="available"):
        DSMLoss(edm, sigma_sampling="nope")


def _likelihood_objective(sde):
    """(1/(T - t_min)) int lambda_lik(t) * posterior variance dt, in closed form:
    lambda v dt = 2 C^2 / (C^2 + sigma^2) d log sigma."""
    lo, hi = sde.sigma_min, sde.sigma_max
    integral = math.log((C**2 + lo**2) / lo**2 * hi**2 / (C**2 + hi**2))
    return integral / (sde.t_max - sde.t_min)


@pytest.mark.parametrize("sde", [EDM(), VP(), SubVP(), VE()], ids=["edm", "vp", "subvp", "ve"])
def test_importance_sampling_is_unbiased_and_flattens_the_weight(sde):
    g = torch.Generator().manual_seed(3)
    is_loss = DSMLoss(sde, "likelihood", "importance")
    x0 = MU + C * torch.randn(20000, 8, generator=g, dtype=F64)
    loss = is_loss(exact_denoiser, x0, generator=g)
    target = _likelihood_objective(sde)
    assert loss.mean().item() == pytest.approx(target, rel=0.03)
    # the weight on the eps-MSE, lambda sigma^2 p_uniform / q, is the constant Z / (T - t_min)
    sigma, corr = is_loss._sample(4000, torch.device("cpu"), g)
    eps_weight = is_loss.weight(sigma.double()) * sigma.double() ** 2 * corr.double()
    z = 2 * math.log(sde.sigma_max / sde.sigma_min) / (sde.t_max - sde.t_min)
    torch.testing.assert_close(eps_weight, torch.full_like(eps_weight, z), rtol=5e-3, atol=0)


def test_uniform_t_estimates_the_same_objective():
    sde = VP(t_min=0.05)  # a short 1/t tail keeps the plain estimator's variance in check
    g = torch.Generator().manual_seed(4)
    x0 = MU + C * torch.randn(100000, 4, generator=g, dtype=F64)
    loss = DSMLoss(sde, "likelihood", "uniform_t")(exact_denoiser, x0, generator=g)
    assert loss.mean().item() == pytest.approx(_likelihood_objective(sde), rel=0.04)


@pytest.mark.parametrize(
    "sde", [EDM(), VP(), VP(schedule="cosine"), VE()], ids=["edm", "vp", "cos", "ve"]
)
def test_importance_density_is_proper(sde):
    loss_fn = DSMLoss(sde, "likelihood", "importance")
    t_grid, _ = loss_fn._importance_grid()
    q = loss_fn.importance_density(t_grid[:-1])  # piecewise constant: left values per cell
    assert (q >= 0).all()
    assert torch.sum(q * t_grid.diff()).item() == pytest.approx(1.0, abs=1e-9)
    assert loss_fn.importance_density(torch.tensor([sde.t_max + 1.0])).item() == 0.0
    # proportional to g^2 / (s sigma)^2 = d log sigma^2 / dt (normaliser 2 log(smax/smin))
    t = torch.linspace(sde.t_min, sde.t_max, 41, dtype=F64)[1:-1]
    z = 2 * math.log(sde.sigma_max / sde.sigma_min)
    torch.testing.assert_close(
        loss_fn.importance_density(t), loss_fn.importance_target(t) / z, rtol=2e-3, atol=0
    )
    # drawn levels: log sigma uniform (the closed form of this density)
    sigma = loss_fn.sample_sigma(20000, torch.device("cpu"), torch.Generator().manual_seed(5))
    u = (sigma.double().log() - math.log(sde.sigma_min)) / math.log(sde.sigma_max / sde.sigma_min)
    qs = torch.quantile(u, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=F64))
    torch.testing.assert_close(
        qs, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=F64), atol=0.015, rtol=0
    )


@pytest.mark.parametrize("sampling", SIGMA_SAMPLINGS)
def test_sampled_levels_lie_in_range(sampling):
    sde = VP()
    sigma = DSMLoss(sde, sigma_sampling=sampling).sample_sigma(5000, torch.device("cpu"))
    assert sigma.shape == (5000,) and sigma.dtype == torch.float32
    assert sigma.min() >= sde.sigma_min * (1 - 1e-5) and sigma.max() <= sde.sigma_max * (1 + 1e-5)


def test_masked_reduction_ignores_padding():
    loss_fn = DSMLoss(EDM(), weighting="simple")
    g = torch.Generator().manual_seed(6)
    b, n, f = 3, 5, 2
    x0 = torch.randn(b, n, f, generator=g, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    noise = torch.randn(b, n, f, generator=g, dtype=F64)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    loss = loss_fn(exact_denoiser, x0, mask=mask, sigma=sigma, noise_fn=lambda z, m: noise)
    for i in range(b):
        k = int(mask[i].sum())
        x = x0[i, :k] + sigma[i] * noise[i, :k]
        d = MU + C**2 / (C**2 + sigma[i] ** 2) * (x - MU)
        assert loss[i].item() == pytest.approx(
            ((d - x0[i, :k]) ** 2).mean().item() / sigma[i].item() ** 2
        )
    # garbage at padded entries changes nothing
    padded = torch.where(mask[..., None] > 0, x0, torch.full_like(x0, 1e3))
    again = loss_fn(exact_denoiser, padded, mask=mask, sigma=sigma, noise_fn=lambda z, m: noise)
    torch.testing.assert_close(again, loss)


def test_mapping_state_with_mask():
    loss_fn = DSMLoss(EDM(), weighting="edm", sigma_data=C)
    g = torch.Generator().manual_seed(7)
    x0 = {
        "a": torch.randn(2, 3, generator=g, dtype=F64),
        "b": torch.randn(2, 2, 2, generator=g, dtype=F64),
    }
    mask = {"a": None, "b": torch.tensor([[1, 0], [1, 1]])}  # None: "a" is not padded
    noise = {k: torch.randn(v.shape, generator=g, dtype=F64) for k, v in x0.items()}
    sigma = torch.tensor([0.7, 1.3], dtype=F64)
    loss = loss_fn(exact_denoiser, x0, mask=mask, sigma=sigma, noise_fn=lambda z, m: noise)
    w = loss_fn.weight(sigma)
    for i in range(2):
        errs = []
        for k in ("a", "b"):
            x = x0[k][i] + sigma[i] * noise[k][i]
            err = (MU + C**2 / (C**2 + sigma[i] ** 2) * (x - MU) - x0[k][i]) ** 2
            if k == "b":
                err = err[mask["b"][i] > 0]
            errs.append(err.reshape(-1))
        assert loss[i].item() == pytest.approx((w[i] * torch.cat(errs).mean()).item())


def test_per_element_levels():
    """One level per node: noise and lambda per element; the denoiser sees the (B, N) levels."""
    loss_fn = DSMLoss(EDM(), weighting="simple")
    g = torch.Generator().manual_seed(8)
    b, n, f = 2, 4, 3
    x0 = torch.randn(b, n, f, generator=g, dtype=F64)
    noise = torch.randn(b, n, f, generator=g, dtype=F64)
    sigma = torch.exp(torch.randn(b, n, generator=g, dtype=F64))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    sigma = torch.where(
        mask > 0, sigma, torch.zeros_like(sigma)
    )  # level 0 at padding: still finite
    seen = []

    def den(x, s):
        seen.append(s.shape)
        return exact_denoiser(x, s)

    loss = loss_fn(den, x0, mask=mask, sigma=sigma, noise_fn=lambda z, m: noise)
    assert seen == [(b, n)] and torch.isfinite(loss).all()
    s = sigma[..., None]
    x = x0 + s * noise
    err = (MU + C**2 / (C**2 + s**2) * (x - MU) - x0) ** 2 / s**2
    for i in range(b):
        k = int(mask[i].sum())
        assert loss[i].item() == pytest.approx(err[i, :k].mean().item())
    # mapping of levels for a mapping state; and (B,) levels equal constant per-element levels
    state = {"nodes": x0, "adj": torch.randn(b, n, n, generator=g, dtype=F64)}
    lv = {"nodes": sigma.clamp_min(0.1), "adj": torch.full((b, n, n), 0.5, dtype=F64)}
    out = loss_fn(exact_denoiser, state, sigma=lv, generator=torch.Generator().manual_seed(0))
    assert out.shape == (b,) and torch.isfinite(out).all()
    shared = torch.tensor([0.4, 0.9], dtype=F64)
    a = loss_fn(exact_denoiser, x0, sigma=shared, generator=torch.Generator().manual_seed(1))
    full = shared[:, None, None].expand(b, n, f)
    c = loss_fn(exact_denoiser, x0, sigma=full, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, c)


def test_default_call_still_works():
    """The original call: lognormal levels, EDM weighting, float32 state, no generator."""
    loss = DSMLoss(EDM())(exact_denoiser, torch.randn(8, 3, 2))
    assert loss.shape == (8,) and loss.dtype == torch.float32 and torch.isfinite(loss).all()
