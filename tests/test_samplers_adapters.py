"""The reverse SDE and the probability-flow ODE solved by torchsde / torchdiffeq agree with ours."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.sampling import get_sampler, get_sigmas
from polydiff.sampling.adapters import ProbabilityFlowODE, ReverseSDE
from polydiff.sampling.analytic import GaussianMixture
from polydiff.sde import EDM


def mixture() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.0, 0.5], [1.0, 1.0, 0.0], [0.0, -1.0, -0.5]])
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, torch.tensor([0.6, 0.7, 0.8]))


@pytest.mark.parametrize("log_sigma", [True, False])
def test_torchdiffeq_solves_the_probability_flow_ode_like_rk45(log_sigma):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    gm, sde = mixture(), EDM()
    x0 = sde.sigma_max * torch.randn(
        16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    ode = ProbabilityFlowODE(gm, log_sigma=log_sigma)
    ends = [sde.sigma_max, sde.sigma_min]
    t = torch.tensor([math.log(s) for s in ends] if log_sigma else ends, dtype=torch.float64)
    theirs = torchdiffeq.odeint(ode, x0, t, rtol=1e-10, atol=1e-10, method="dopri5")[-1]
    grid = get_sigmas(sde, 10, dtype=torch.float64)[:-1]  # ends at sigma_min: no final denoising
    ours = get_sampler("rk45").fn(gm, x0, grid, rtol=1e-10, atol=1e-10)
    assert ode.nfe > 0
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-7)


def test_torchsde_euler_on_the_reverse_sde_matches_our_euler_maruyama_path_by_path():
    torchsde = pytest.importorskip("torchsde")
    gm = mixture()
    n = 100
    sigmas = torch.linspace(10.0, 0.05, n + 1, dtype=torch.float64)
    ts = -sigmas  # torchsde integrates forward in t = -sigma
    y0 = 10 * torch.randn(16, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bm = torchsde.BrownianInterval(
        t0=float(ts[0]), t1=float(ts[-1]), size=y0.shape, dtype=torch.float64, entropy=3
    )
    sde = ReverseSDE(gm)
    assert sde.noise_type == "diagonal" and sde.sde_type == "ito"
    theirs = torchsde.sdeint(sde, y0, ts, method="euler", dt=float(ts[1] - ts[0]), bm=bm)[-1]
    steps = iter(range(n))

    def increments(like):  # our sampler driven by the same Brownian increments
        i = next(steps)
        return bm(ts[i], ts[i + 1]) / math.sqrt(float(ts[i + 1] - ts[i]))

    ours = get_sampler("euler_maruyama").fn(gm, y0, sigmas, noise=increments)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


def test_adapters_reshape_for_the_denoiser():
    seen = []

    def den(x, sigma, scale):
        seen.append(x.shape)
        return x * scale

    ode = ProbabilityFlowODE(den, cond={"scale": 0.5}, shape=(2, 3))
    y = torch.ones(4, 6)
    out = ode(torch.tensor(2.0), y)
    assert seen == [(4, 2, 3)] and out.shape == (4, 6)
    torch.testing.assert_close(out, torch.full((4, 6), 0.25))
    sde = ReverseSDE(den, cond={"scale": 0.5}, shape=(2, 3))
    torch.testing.assert_close(sde.g(torch.tensor(-2.0), y), torch.full((4, 6), 2.0))
    torch.testing.assert_close(sde.f(torch.tensor(-2.0), y), torch.full((4, 6), -0.5))
