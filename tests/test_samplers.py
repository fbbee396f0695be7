"""The sampling API: registry, NFE accounting, grids, and every sampler on every kind of state."""

from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.sampling import SAMPLERS, get_sampler, get_sigmas, run_sampler, sample
from polydiff.sampling.schedules import GRIDS, check_sigmas
from polydiff.sde import EDM, SDES, VP

EXPECTED = {
    "euler_maruyama",
    "pc",
    "ddpm",
    "ddim",
    "euler",
    "heun",
    "dpmpp_2m",
    "dpmpp_3m",
    "dpmpp_2m_sde",
    "unipc",
    "rk45",
}
NAMES = sorted(EXPECTED)
FAST = {"rk45": {"rtol": 1e-2, "atol": 1e-2}}  # keep the adaptive solver quick here



def expected_nfe(name: str, steps: int, ends_in_zero: bool = True, **options) -> int | None:
    """Denoiser calls for ``steps`` nonzero levels (a grid without the final 0 has one step less)."""
    n = steps if ends_in_zero else steps - 1  # steps between grid points
    if name == "heun":
        return 2 * n - 1 if ends_in_zero else 2 * n
    if name == "pc":
        return n * (1 + options.get("n_corrector", 1))
    if name == "rk45":
        return None
    return n


def shrink_denoiser(tau: float = 0.7):
    """Exact denoiser of N(0, tau^2 I) for any state; counts its calls."""

    def den(x, sigma, **_):
        den.calls += 1
        if isinstance(x, dict):
            return {k: shrink(v, sigma) for k, v in x.items()}
        return shrink(x, sigma)

    def shrink(v, sigma):
        s = sigma.reshape(-1, *([1] * (v.ndim - 1))).to(v.dtype)
        return v * (tau**2 / (tau**2 + s**2))

    den.calls = 0
    return den


def test_registry_has_every_sampler_with_a_citing_docstring():
    assert EXPECTED <= set(SAMPLERS)
    for name in EXPECTED:
        spec = get_sampler(name)
        doc = (spec.fn.__doc__ or "").strip()
        assert doc, name
        assert spec.description and spec.nfe
    assert not get_sampler("dpmpp_2m").stochastic
    assert get_sampler("ddpm").stochastic
    with pytest.raises(KeyError, match="available"):
        get_sampler("nope")


def test_public_sample_defaults_to_dpmpp_2m():
    den = shrink_denoiser()
    noise = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    x = polydiff.sample(den, EDM(), noise=noise, steps=7)
    assert x.shape == (8, 3) and den.calls == 7
    y = sample(den, EDM(), noise=noise, sampler="dpmpp_2m", steps=7)
    assert torch.equal(x, y)


def _states(kind: str, gen: torch.Generator):
    if kind == "rank2":
        return torch.randn(6, 5, generator=gen), None
    if kind == "rank4":
        return torch.randn(4, 2, 3, 5, generator=gen), None
    if kind == "ragged":
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
        noise = torch.randn(3, 4, 3, generator=gen) * mask[..., None]
        return noise, mask
    nodes = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    state = {"x": torch.randn(2, 3, 2, generator=gen), "adj": torch.randn(2, 3, 3, generator=gen)}
    mask = {"x": nodes, "adj": nodes[:, :, None] & nodes[:, None, :]}
    state = {"x": state["x"] * nodes[..., None], "adj": state["adj"] * mask["adj"]}
    return state, mask


@pytest.mark.parametrize("kind", ["rank2", "rank4", "ragged", "mapping"])
@pytest.mark.parametrize("name", NAMES)
def test_every_sampler_on_every_state(name, kind):
    gen = torch.Generator().manual_seed(1)
    noise, mask = _states(kind, gen)
    den = shrink_denoiser()
    steps = 6
    res = run_sampler(
        den,
        EDM(),
        noise=noise,
        sampler=name,
        steps=steps,
        mask=mask,
        generator=torch.Generator().manual_seed(2),
        **FAST.get(name, {}),
    )
    leaves_in = noise if isinstance(noise, dict) else {"": noise}
    leaves_out = res.x if isinstance(res.x, dict) else {"": res.x}
    assert leaves_in.keys() == leaves_out.keys()
    for key, v in leaves_out.items():
        assert v.shape == leaves_in[key].shape and v.dtype == leaves_in[key].dtype
        assert torch.isfinite(v).all()
        m = mask if not isinstance(mask, dict) else mask[key]
        if m is not None:
            padded = ~m.reshape(*m.shape, *([1] * (v.ndim - m.ndim))).expand_as(v)
            assert (v[padded] == 0).all(), "padded entries must stay zero"
    assert res.nfe == den.calls
    want = expected_nfe(name, steps)
    if want is not None:
        assert res.nfe == want
    else:
        assert res.nfe >= 7 and (res.nfe - 1) % 6 == 0  # Dormand–Prince: 1 + 6 per step
    assert res.sigmas.shape == (steps + 1,) and res.sigmas[-1] == 0


@pytest.mark.parametrize("name", NAMES)
def test_denoise_final(name):
    """True: the step to 0 returns D of the last level; False: stop at sigma_min, noisy."""
    noise = torch.randn(16, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []
    opts = FAST.get(name, {})

    def cb(i, x, denoised):
        seen.append(denoised)

    res = run_sampler(
        shrink_denoiser(), EDM(), noise=noise, sampler=name, steps=5, callback=cb, **opts
    )
    assert seen, "callback must be called"
    if name != "rk45":  # rk45 reports accepted steps; its final D comes from its last stage
        torch.testing.assert_close(res.x, seen[-1])
    den = shrink_denoiser()
    res2 = run_sampler(den, EDM(), noise=noise, sampler=name, steps=5, denoise_final=False, **opts)
    assert float(res2.sigmas[-1]) == pytest.approx(EDM().sigma_min, rel=1e-5)
    want = expected_nfe(name, 5, ends_in_zero=False)
    if want is not None:
        assert res2.nfe == want == den.calls


def test_callback_sees_each_step():
    calls = []
    run_sampler(
        shrink_denoiser(),
        EDM(),
        noise=torch.randn(4, 2),
        sampler="heun",
        steps=4,
        callback=lambda i, x, d: calls.append(i),
    )
    assert calls == [0, 1, 2, 3]


@pytest.mark.parametrize("schedule", GRIDS)  # "tuned" is a run folder's, not the SDE's
@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_grids_respect_each_sdes_sigma_range(sde_name, schedule):
    sde = SDES[sde_name]()
    s = get_sigmas(sde, 12, schedule, dtype=torch.float64)
    assert s.shape == (13,) and s[-1] == 0
    assert bool((s[:-1] > s[1:]).all())
    assert float(s[0]) == pytest.approx(sde.sigma_max, rel=1e-6)
    assert float(s[-2]) == pytest.approx(sde.sigma_min, rel=1e-6)
    check_sigmas(sde, s.float())  # float32 rounding stays inside the range


def test_sigmas_outside_the_range_are_refused():
    sde = VP()
    with pytest.raises(ValueError, match="covers"):
        run_sampler(
            shrink_denoiser(), sde, noise=torch.randn(2, 2), sigmas=torch.tensor([1e4, 1.0, 0.0])
        )
    with pytest.raises(ValueError, match="decreasing"):
        run_sampler(
            shrink_denoiser(), sde, noise=torch.randn(2, 2), sigmas=torch.tensor([1.0, 2.0, 0.0])
        )


def test_a_grid_below_sigma_max_starts_from_its_own_prior():
    """Starting at sigma_0 < sigma_max, the state is drawn with std sqrt(sigma_0^2 + excess)."""
    sde = VP()
    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []
    sigmas = torch.tensor([10.0, 1.0, 0.0], dtype=torch.float64)
    run_sampler(
        shrink_denoiser(1.0),
        sde,
        noise=noise,
        sampler="euler",
        sigmas=sigmas,
        callback=lambda i, x, d: seen.append(x) if i == 0 else None,
    )
    assert float(seen[0].std()) == pytest.approx(math.sqrt(1 + 10.0**2), rel=0.02)


def test_option_errors_are_clear():
    noise = torch.randn(2, 2)
    with pytest.raises(ValueError, match="eta"):
        run_sampler(shrink_denoiser(), EDM(), noise=noise, sampler="ddim", eta=-1.0)
    with pytest.raises(ValueError, match="order"):
        run_sampler(shrink_denoiser(), EDM(), noise=noise, sampler="unipc", order=5)
    with pytest.raises(TypeError):
        run_sampler(shrink_denoiser(), EDM(), noise=noise, sampler="euler", bogus=1)


@pytest.mark.parametrize(
    "name, tol", [("heun", 1e-2), ("dpmpp_2m", 1e-2), ("dpmpp_3m", 1e-3), ("unipc", 1e-3)]
)
def test_ode_solvers_match_the_closed_form_flow_of_a_gaussian(name, tol):
    """For N(0, tau^2 I) the PF-ODE flow is x(sigma) = x_T sqrt(tau^2 + sigma^2) / sqrt(tau^2 + T^2)."""
    tau, big_t = 0.7, 80.0
    noise = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = run_sampler(shrink_denoiser(tau), EDM(), noise=noise, sampler=name, steps=60)
    exact = noise * big_t * tau / math.sqrt(tau**2 + big_t**2)
    assert float((res.x - exact).abs().max() / exact.abs().max()) < tol
