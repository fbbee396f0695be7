"""Log-likelihood through the probability-flow ODE against the exact density of Gaussian targets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.likelihood import LikelihoodResult, _dopri5, _heun, _karras_grid, log_likelihood
from polydiff.param import Denoiser
from polydiff.sde import EDM, VE, VP, SubVP

F64 = torch.float64
MU, C = 0.3, 0.7



def iso_denoiser(x, sigma, **cond):
    """E[x_0 | x] for x_0 ~ N(MU, C^2 I), any rank."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + C**2 / (C**2 + s**2) * (x - MU)


def s0_of(sde):
    return float(sde.scale(torch.tensor(sde.t_min, dtype=F64)))


def iso_exact(sde, x):
    """log N(x; s0 MU, s0^2 (C^2 + sigma_min^2) I): the true density of x_{t_min} (scaled)."""
    s0, sig0 = s0_of(sde), sde.sigma_min
    var = s0**2 * (C**2 + sig0**2)
    flat = x.reshape(x.shape[0], -1)
    return (-0.5 * (flat - s0 * MU) ** 2 / var - 0.5 * math.log(2 * math.pi * var)).sum(1)


def iso_flow(sde, x):
    """What an exact solve must return: the ODE's flow map and divergence integral in closed form,
    with the SDE's own prior (which differs from the true marginal at sigma_max by a hair)."""
    s0, sig0, sig1 = s0_of(sde), sde.sigma_min, sde.sigma_max
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    ratio = (C**2 + sig1**2) / (C**2 + sig0**2)
    y1 = MU + math.sqrt(ratio) * (flat / s0 - MU)
    return sde.prior_logp(y1) + 0.5 * n * math.log(ratio) - n * math.log(s0)


SDES = [EDM(), VP(), SubVP(), VE(), VP(schedule="cosine")]
SDE_IDS = ["edm", "vp", "subvp", "ve", "vp-cosine"]


@pytest.mark.parametrize("shape", [(5, 8), (5, 2, 2, 2)], ids=["rank2", "rank4"])
@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_isotropic_gaussian_rk45(sde, shape):
    g = torch.Generator().manual_seed(0)
    x = s0_of(sde) * (MU + C * torch.randn(shape, generator=g, dtype=F64))
    res = log_likelihood(iso_denoiser, sde, x, generator=g)
    assert isinstance(res, LikelihoodResult) and res.logp.shape == (5,) and res.nfe > 0
    exact = iso_exact(sde, x)
    assert ((res.logp - exact) / exact).abs().max().item() < 0.01
    torch.testing.assert_close(res.logp, iso_flow(sde, x), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(res.bpd, -res.logp / (8 * math.log(2)))


@pytest.mark.parametrize("sde", [EDM(), VP()], ids=["edm", "vp"])
def test_isotropic_gaussian_heun(sde):
    g = torch.Generator().manual_seed(1)
    x = MU + C * torch.randn(4, 2, 2, 2, generator=g, dtype=F64)
    calls = []

    def counted(x, sigma):
        calls.append(1)
        return iso_denoiser(x, sigma)

    res = log_likelihood(counted, sde, x, method="heun", steps=200, generator=g)
    assert res.nfe == 400 == len(calls)
    exact = iso_exact(sde, x)
    assert ((res.logp - exact) / exact).abs().max().item() < 0.01
    torch.testing.assert_close(res.logp, iso_flow(sde, x), rtol=2e-3, atol=2e-3)


def _full_cov(d, g):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    lam = torch.linspace(0.3, 1.5, d, dtype=F64)
    mu = torch.linspace(-0.5, 0.5, d, dtype=F64)
    return mu, q, lam


def full_denoiser(mu, q, lam):
    def den(x, sigma, **cond):
        flat = x.reshape(x.shape[0], -1) - mu
        gain = lam / (lam + sigma[:, None] ** 2)  # Sigma (Sigma + s^2 I)^-1 in the eigenbasis
        return (mu + ((flat @ q) * gain) @ q.T).reshape(x.shape)

    return den


def full_exact(sde, x, mu, q, lam):
    s0, sig0 = s0_of(sde), sde.sigma_min
    cov = s0**2 * (q @ torch.diag(lam + sig0**2) @ q.T)
    dist = torch.distributions.MultivariateNormal(s0 * mu, covariance_matrix=cov)
    return dist.log_prob(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("sde", [EDM(), VP()], ids=["edm", "vp"])
def test_full_covariance_exact_trace(sde):
    g = torch.Generator().manual_seed(2)
    mu, q, lam = _full_cov(6, g)
    x = s0_of(sde) * (mu + (torch.randn(8, 6, generator=g, dtype=F64) * lam.sqrt()) @ q.T)
    res = log_likelihood(full_denoiser(mu, q, lam), sde, x.reshape(8, 3, 2), estimator="exact")
    exact = full_exact(sde, x, mu, q, lam)
    assert ((res.logp - exact) / exact).abs().max().item() < 0.01
    # divergence integral in closed form: sum_k 1/2 log((lam_k + s1^2) / (lam_k + s0^2))
    div = 0.5 * torch.log((lam + sde.sigma_max**2) / (lam + sde.sigma_min**2)).sum()
    torch.testing.assert_close(res.delta_logp, div.expand(8), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("estimator", ["rademacher", "gaussian"])
def test_hutchinson_with_enough_probes(estimator):
    """Unbiased: over a batch and many probes the estimate matches the exact trace's answer
    (same solver and grid, so only the trace estimate differs). sigma_min = 0.5 keeps the Gaussian
    probes' variance 2 |int J dlog sigma|_F^2 small enough for a batch of 4096 to pin the mean."""
    sde = EDM(sigma_min=0.5)
    g = torch.Generator().manual_seed(3)
    mu, q, lam = _full_cov(6, g)
    b = 4096 if estimator == "gaussian" else 256
    x = mu + (torch.randn(b, 6, generator=g, dtype=F64) * lam.sqrt()) @ q.T
    den = full_denoiser(mu, q, lam)
    opts = dict(method="heun", steps=6)  # the solver is shared, so its accuracy is moot here
    res = log_likelihood(den, sde, x, estimator=estimator, n_probes=16, generator=g, **opts)
    ref = log_likelihood(den, sde, x, estimator="exact", **opts)
    scale = full_exact(sde, x, mu, q, lam).abs().mean().item()
    assert (res.logp - ref.logp).mean().abs().item() < 0.01 * scale
    if estimator == "rademacher":  # low variance here: each sample is close on its own
        assert (res.logp - ref.logp).abs().max().item() < 0.15 * scale
    # the probes come from the generator: same seed, same answer
    again, other = (
        log_likelihood(
            den,
            sde,
            x[:4],
            estimator=estimator,
            n_probes=2,
            method="heun",
            steps=4,
            generator=torch.Generator().manual_seed(9),
        )
        for _ in range(2)
    )
    torch.testing.assert_close(again.logp, other.logp)


def test_rademacher_is_exact_for_isotropic_targets():
    sde = EDM()
    x = MU + C * torch.randn(3, 8, dtype=F64)
    a = log_likelihood(iso_denoiser, sde, x, estimator="rademacher", method="heun", steps=16)
    b = log_likelihood(iso_denoiser, sde, x, estimator="exact", method="heun", steps=16)
    torch.testing.assert_close(a.logp, b.logp)


def test_mask_and_mapping_state():
    """Padded entries do not count: logp is the Gaussian density of the valid entries only."""
    sde = VP()
    g = torch.Generator().manual_seed(4)
    s0 = s0_of(sde)
    x = {
        "nodes": s0 * (MU + C * torch.randn(3, 4, 2, generator=g, dtype=F64)),
        "glob": s0 * (MU + C * torch.randn(3, 3, generator=g, dtype=F64)),
    }
    mask = {"nodes": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])}
    x["nodes"] = torch.where(mask["nodes"][..., None] > 0, x["nodes"], 7.0)  # garbage padding

    def den(state, sigma):
        return {k: iso_denoiser(v, sigma) for k, v in state.items()}

    res = log_likelihood(den, sde, x, mask=mask, dequantization_offset=8.0, generator=g)
    dims = torch.tensor([11.0, 7.0, 5.0], dtype=F64)
    torch.testing.assert_close(res.dims, dims)
    for i in range(3):
        k = int(mask["nodes"][i].sum())
        valid = torch.cat([x["nodes"][i, :k].reshape(-1), x["glob"][i]])[None]
        exact = iso_exact(sde, valid)
        assert res.logp[i].item() == pytest.approx(exact.item(), rel=0.01)
        assert res.logp[i].item() == pytest.approx(iso_flow(sde, valid).item(), rel=1e-3)
    torch.testing.assert_close(res.bpd, -res.logp / (dims * math.log(2)) + 8.0)
    assert set(res.latent) == {"nodes", "glob"}
    assert torch.all(res.latent["nodes"][1, 2:] == 0)  # padded entries stay put (at zero)


def test_through_a_denoiser_module():
    """A network wrapped by Denoiser (eps parameterisation) is differentiated through autograd."""
    sde = EDM()

    class EpsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0, dtype=F64))  # params need not be frozen

        def forward(self, x_in, c_noise):
            s = torch.exp(4 * c_noise)[:, None]
            x = x_in * torch.sqrt(s**2 + 1.0)
            return self.scale * (x - iso_denoiser(x, s[:, 0])) / s

    den = Denoiser(EpsNet(), sde, "eps", sigma_data=1.0)
    x = MU + C * torch.randn(4, 8, dtype=F64)
    res = log_likelihood(den, sde, x, method="heun", steps=100)
    exact = iso_exact(sde, x)
    assert ((res.logp - exact) / exact).abs().max().item() < 0.01
    with torch.no_grad():  # works under no_grad too
        again = log_likelihood(den, sde, x, method="heun", steps=100)
    torch.testing.assert_close(again.logp, res.logp)


def test_bad_options():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="method"):
        log_likelihood(iso_denoiser, EDM(), x, method="euler")
    with pytest.raises(ValueError, match="estimator"):
        log_likelihood(iso_denoiser, EDM(), x, estimator="nope")
    with pytest.raises(ValueError, match="n_probes"):
        log_likelihood(iso_denoiser, EDM(), x, n_probes=0)


def test_private_integrators_orders():
    """dy/du = y cos(u): y = exp(sin u). Dormand–Prince meets its tolerance; Heun is 2nd order."""

    def f(u, y):
        return y * math.cos(u)

    y0 = torch.ones(2, 1, dtype=F64)
    exact = math.exp(math.sin(3.0))
    y = _dopri5(f, y0, 0.0, 3.0, rtol=1e-10, atol=1e-12, max_steps=1000)
    assert abs(y[0, 0].item() - exact) < 1e-8
    errs = []
    for n in (40, 80):
        grid = [3.0 * i / n for i in range(n + 1)]
        errs.append(abs(_heun(f, y0, grid)[0, 0].item() - exact))
    assert 3.4 < errs[0] / errs[1] < 4.6
    grid = _karras_grid(0.002, 80.0, 10)
    assert grid[0] == pytest.approx(0.002) and grid[-1] == pytest.approx(80.0)
