"""The forward processes against closed forms and against simulation of their own SDEs."""

from __future__ import annotations

import math

import pytest
import torch

from polydiff.sde import EDM, SDE, SDES, VE, VP, SubVP, build_sde

F64 = torch.float64



def _all_sdes():
    return [
        VP(),
        VP(schedule="cosine"),
        SubVP(),
        SubVP(schedule="cosine"),
        VE(),
        EDM(),
    ]


IDS = ["vp", "vp-cosine", "subvp", "subvp-cosine", "ve", "edm"]


def test_registry_and_defaults():
    assert set(SDES) == {"vp", "subvp", "ve", "edm"}
    assert isinstance(build_sde({"name": "subvp"}), SubVP)
    ve = build_sde({"name": "ve", "sigma_min": 0.01, "sigma_max": 50})
    assert ve.sigma_min == pytest.approx(0.01) and ve.sigma_max == pytest.approx(50)
    assert SubVP().sigma_max > 100 and VE(
        sigma_min=0.01, sigma_max=50
    ).prior_std() == pytest.approx(50)
    with pytest.raises(ValueError, match="available"):
        build_sde({"name": "nope"})
    with pytest.raises(ValueError, match="schedule"):
        VP(schedule="quadratic")


@pytest.mark.parametrize("sde", _all_sdes(), ids=IDS)
def test_sigma_inv_inverts_sigma(sde):
    t = torch.linspace(sde.t_min, sde.t_max, 101, dtype=F64)
    torch.testing.assert_close(sde.sigma_inv(sde.sigma(t)), t, rtol=1e-9, atol=1e-9)
    sig = torch.exp(torch.linspace(math.log(sde.sigma_min), math.log(sde.sigma_max), 50, dtype=F64))
    torch.testing.assert_close(sde.sigma(sde.sigma_inv(sig)), sig, rtol=1e-9, atol=0)
    # float32 and batched leading shapes pass through
    t32 = torch.rand(3, 4) * (sde.t_max - sde.t_min) + sde.t_min
    assert sde.sigma(t32).shape == (3, 4) and sde.sigma(t32).dtype == torch.float32


@pytest.mark.parametrize("sde", _all_sdes(), ids=IDS)
def test_closed_forms_agree_with_autograd_and_shared_view(sde):
    t = torch.linspace(sde.t_min, sde.t_max * 0.98, 17, dtype=F64)
    # d sigma^2/dt and d log s/dt closed forms == autograd of sigma(t), s(t)
    torch.testing.assert_close(sde.dsigma2_dt(t), SDE.dsigma2_dt(sde, t), rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(
        sde.dlog_scale_dt(t), SDE.dlog_scale_dt(sde, t), rtol=1e-7, atol=1e-12
    )
    # g^2 = s^2 d sigma^2 / dt (the shared view) equals the diffusion each class reports
    torch.testing.assert_close(
        sde.diffusion(t) ** 2, sde.scale(t) ** 2 * sde.dsigma2_dt(t), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_paper_sdes(schedule):
    """VP: f = -beta x / 2, g^2 = beta. sub-VP (Song et al. 2021 Eq. 31): g^2 = beta (1 - e^{-2 int beta})
    and the marginal std is 1 - abar — the shared view reproduces both."""
    vp, sub = VP(schedule=schedule), SubVP(schedule=schedule)
    t = torch.linspace(vp.t_min, vp.t_max, 33, dtype=F64)
    beta = vp.beta(t)
    integral = -vp.log_alpha_bar(t)
    # the integral of beta really is -log abar
    fine = torch.linspace(0, float(t[16]), 20001, dtype=F64)
    assert torch.trapezoid(vp.beta(fine), fine).item() == pytest.approx(
        float(integral[16]), rel=1e-6
    )
    x = torch.ones(33, 2, dtype=F64)
    torch.testing.assert_close(vp.drift(x, t), -0.5 * beta[:, None] * x)
    torch.testing.assert_close(sub.drift(x, t), -0.5 * beta[:, None] * x)
    torch.testing.assert_close(vp.diffusion(t) ** 2, beta)
    paper_g2 = beta * (1 - torch.exp(-2 * integral))
    torch.testing.assert_close(sub.diffusion(t) ** 2, paper_g2)
    torch.testing.assert_close(sub.scale(t) ** 2 * sub.dsigma2_dt(t), paper_g2)
    abar = torch.exp(-integral)
    torch.testing.assert_close(sub.scale(t) * sub.sigma(t), 1 - abar)  # std of x_t | x_0
    torch.testing.assert_close(vp.scale(t) * vp.sigma(t), torch.sqrt(1 - abar))


def test_ve_and_edm_forms():
    ve = VE(sigma_min=0.01, sigma_max=50)
    t = torch.linspace(0, 1, 11, dtype=F64)
    torch.testing.assert_close(ve.sigma(t), 0.01 * (50 / 0.01) ** t)
    torch.testing.assert_close(ve.scale(t), torch.ones_like(t))
    torch.testing.assert_close(ve.diffusion(t), ve.sigma(t) * math.sqrt(2 * math.log(5000)))
    edm = EDM()
    t = torch.linspace(edm.t_min, edm.t_max, 11, dtype=F64)
    torch.testing.assert_close(edm.sigma(t), t)
    torch.testing.assert_close(edm.diffusion(t), torch.sqrt(2 * t))
    assert torch.all(edm.drift(torch.ones(11, 3), t) == 0)


@pytest.mark.parametrize("sde", _all_sdes(), ids=IDS)
def test_prior_is_consistent(sde):
    std = sde.prior_std()
    if isinstance(sde, (VP, SubVP)):
        # N(0, I) on the scaled x_T is N(0, 1/s(T)^2) unscaled
        assert std == pytest.approx(1 / float(sde.scale(torch.tensor(sde.t_max, dtype=F64))))
        if isinstance(sde, VP):
            assert std == pytest.approx(math.sqrt(1 + sde.sigma_max**2))
    else:
        assert std == pytest.approx(sde.sigma_max)
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample(torch.randn(4000, 5, generator=g, dtype=F64))
    assert x.std().item() == pytest.approx(std, rel=0.03)
    ref = torch.distributions.Normal(0.0, std).log_prob(x).sum(1)
    torch.testing.assert_close(sde.prior_logp(x), ref)
    # any rank, mapping states and masks: padded entries neither count nor contribute
    y = x[:6].reshape(6, 5, 1, 1)
    torch.testing.assert_close(sde.prior_logp(y), ref[:6])
    state = {"a": x[:6, :2], "b": x[:6, 2:].reshape(6, 3, 1)}
    torch.testing.assert_close(sde.prior_logp(state), ref[:6])
    mask = {"b": torch.tensor([[1, 1, 0]] * 6)}
    garbage = dict(state, b=torch.where(mask["b"][..., None] > 0, state["b"], 1e6))
    keep = torch.distributions.Normal(0.0, std).log_prob(x[:6, :4]).sum(1)
    torch.testing.assert_close(sde.prior_logp(garbage, mask), keep)


def _simulate(sde, x, t_a, t_b, steps, gen):
    """Euler–Maruyama on the forward SDE dx = f(x, t) dt + g(t) dw in scaled coordinates.

    Returns the states at a third, two thirds and all of the way from t_a to t_b."""
    ts = torch.linspace(t_a, t_b, steps + 1, dtype=F64)
    snaps = {}
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        g = float(sde.diffusion(t))  # a 0-dim time broadcasts like a (B,) one
        x = (
            x
            + sde.drift(x, t) * dt
            + g * math.sqrt(float(dt)) * torch.randn(x.shape, generator=gen, dtype=F64)
        )
        if (i + 1) * 3 % steps == 0:
            snaps[float(ts[i + 1])] = x
    return snaps


CASES = [
    # (sde, t_a, t_b, steps, x0 mean, x0 std): x0 ~ N(m, c^2) (c = 0: a fixed point)
    ("vp", VP(), 0.0, 1.0, 600, 1.5, 0.0),
    ("vp-gauss", VP(), 0.0, 0.6, 600, -1.0, 0.5),
    ("vp-cosine", VP(schedule="cosine"), 0.0, 0.9, 600, 1.5, 0.3),
    ("subvp", SubVP(), 0.0, 0.9, 600, 2.0, 0.0),
    ("subvp-cosine", SubVP(schedule="cosine"), 0.0, 0.9, 600, 2.0, 0.3),
    ("ve", VE(sigma_min=0.01, sigma_max=50), 0.0, 1.0, 600, 1.0, 0.0),
    ("edm", EDM(), 0.002, 6.0, 600, 1.0, 0.5),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_marginal_matches_simulation(case):
    """Simulate from the closed-form marginal at t_a; compare mean and variance at three times."""
    _, sde, t_a, t_b, steps, m, c = case
    gen = torch.Generator().manual_seed(1)
    shape = (6000, 2, 2)  # rank 3: four independent coordinates per path
    s_a, sig_a = sde.marginal(torch.tensor(t_a, dtype=F64))
    x0 = m + c * torch.randn(shape, generator=gen, dtype=F64)
    x = s_a * (x0 + sig_a * torch.randn(shape, generator=gen, dtype=F64))
    snaps = _simulate(sde, x, t_a, t_b, steps, gen)
    assert len(snaps) == 3
    for t, x in snaps.items():
        s_b, sig_b = sde.marginal(torch.tensor(t, dtype=F64))
        mean, var = float(s_b * m), float(s_b**2 * (c**2 + sig_b**2))
        flat = x.reshape(-1)
        se = math.sqrt(var / flat.numel())
        assert abs(flat.mean().item() - mean) < 5 * se + 0.01 * abs(mean), t
        assert flat.var().item() == pytest.approx(var, rel=0.04), t


def test_drift_accepts_mapping_states_and_any_rank():
    sde = VP()
    t = torch.tensor([0.1, 0.7])
    state = {"a": torch.ones(2, 3), "b": torch.ones(2, 2, 2, 2)}
    out = sde.drift(state, t)
    assert out["b"].shape == (2, 2, 2, 2)
    torch.testing.assert_close(out["b"][:, 0, 0, 0], -0.5 * sde.beta(t))
    torch.testing.assert_close(out["a"][:, 1], -0.5 * sde.beta(t))


def test_vp_discrete_chain():
    vp = VP()
    betas = vp.discrete_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), betas.diff()[0].expand(999))
    abar = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(vp.discrete_sigmas(1000), torch.sqrt(1 / abar - 1))
    # the chain converges to the continuous marginal at t_i = i / n, at rate ~ 1/n
    errs = []
    for n in (100, 1000, 10000):
        t = vp.discrete_times(n)
        assert t[-1].item() == pytest.approx(1.0) and t[0].item() == pytest.approx(1 / n)
        errs.append((vp.discrete_sigmas(n).log() - vp.sigma(t).log()).abs()[n // 10 :].max().item())
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5 and errs[2] < 0.01


def test_subvp_and_cosine_chains():
    vp, sub = VP(), SubVP()
    n = 4000
    abar = torch.cumprod(1 - vp.discrete_betas(n), 0)
    torch.testing.assert_close(sub.discrete_sigmas(n), (1 - abar) / abar.sqrt())
    t = sub.discrete_times(n)
    rel = (sub.discrete_sigmas(n) / sub.sigma(t) - 1).abs()[n // 10 :].max().item()
    assert rel < 0.02
    cos = VP(schedule="cosine")
    for n in (50, 1000):
        t = cos.discrete_times(n)  # the cosine chain is abar(t_i) itself (no clipping here)
        assert t[-1].item() == pytest.approx(cos.t_max)
        torch.testing.assert_close(cos.discrete_sigmas(n), cos.sigma(t), rtol=1e-6, atol=0)
    assert float(cos.discrete_betas(1000).max()) <= 0.999


def test_ve_and_edm_chains():
    ve = VE(sigma_min=0.01, sigma_max=50)
    s = ve.discrete_sigmas(10)
    assert s[0].item() == pytest.approx(0.01) and s[-1].item() == pytest.approx(50)
    ratios = s[1:] / s[:-1]
    torch.testing.assert_close(ratios, ratios[0].expand(9))  # geometric (SMLD)
    torch.testing.assert_close(s, ve.sigma(ve.discrete_times(10)))
    edm = EDM()
    s = edm.discrete_sigmas(18)
    assert s[0].item() == pytest.approx(0.002) and s[-1].item() == pytest.approx(80)
    assert torch.all(s.diff() > 0)


@pytest.mark.parametrize("sde", _all_sdes(), ids=IDS)
def test_c_noise_is_finite(sde):
    sig = sde.discrete_sigmas(20).to(torch.float32)
    assert torch.isfinite(sde.c_noise(sig)).all()
