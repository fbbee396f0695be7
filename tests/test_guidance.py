"""Classifier-free guidance and imputation, for any state and any sampler."""

from __future__ import annotations

import pytest
import torch

from polydiff.guidance import cfg_denoiser, impute, replacement_denoiser
from polydiff.sampling import SAMPLERS, run_sampler
from polydiff.sampling.analytic import Gaussian
from polydiff.sde import EDM


def label_denoiser():
    """D = x / (1 + sigma^2) + shift[label]: a conditional denoiser that records its batch sizes."""
    shift = torch.tensor([[0.0, 0.0], [1.0, -1.0], [3.0, 2.0]])

    def den(x, sigma, label):
        den.batches.append(x.shape[0])
        s = sigma.reshape(-1, 1)
        return x / (1 + s**2) + shift[label]

    den.batches = []
    return den


def test_cfg_combines_both_halves_in_one_call():
    den = label_denoiser()
    x = torch.randn(4, 2)
    sigma = torch.full((4,), 0.5)
    label = torch.tensor([1, 2, 1, 2])
    guided = cfg_denoiser(den, scale=3.0, null_cond={"label": torch.tensor(0)})
    out = guided(x, sigma, label=label)
    assert den.batches == [8]
    cond = den(x, sigma, label)
    uncond = den(x, sigma, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(out, uncond + 3.0 * (cond - uncond))


def test_cfg_scale_one_and_zero_are_single_plain_calls():
    den = label_denoiser()
    x, sigma, label = torch.randn(3, 2), torch.ones(3), torch.tensor([1, 2, 1])
    null = {"label": torch.zeros(3, dtype=torch.long)}
    torch.testing.assert_close(
        cfg_denoiser(den, 1.0, null)(x, sigma, label=label), den(x, sigma, label)
    )
    torch.testing.assert_close(
        cfg_denoiser(den, 0.0, null)(x, sigma, label=label), den(x, sigma, null["label"])
    )
    assert den.batches == [3, 3, 3, 3]


def _bcast(sigma, v):
    return sigma.reshape(-1, *([1] * (v.ndim - 1))).to(v.dtype)


@pytest.mark.parametrize("name", ["dpmpp_2m", "ddpm", "heun"])
def test_cfg_runs_through_samplers_on_mappings(name):
    """Data N(label, 1) per entry: guidance with scale s > 1 pushes samples past the label."""

    def den(x, sigma, label):
        c = lambda v: label.reshape(-1, *([1] * (v.ndim - 1))).to(v.dtype)  # noqa: E731
        return {k: c(v) + (v - c(v)) / (1 + _bcast(sigma, v) ** 2) for k, v in x.items()}

    noise = {"a": torch.randn(64, 3, 2), "b": torch.randn(64, 4)}
    label = {"label": torch.full((64,), 2.0)}
    null = {"label": torch.tensor([0.0])}

    def run(denoiser):
        gen = torch.Generator().manual_seed(0)
        return run_sampler(
            denoiser, EDM(), noise=noise, sampler=name, steps=8, cond=label, generator=gen
        )

    plain, one, three = (
        run(den),
        run(cfg_denoiser(den, 1.0, null)),
        run(cfg_denoiser(den, 3.0, null)),
    )
    assert one.nfe == three.nfe == (15 if name == "heun" else 8)
    torch.testing.assert_close(one.x, plain.x)
    assert three.x["a"].shape == (64, 3, 2)
    assert float(three.x["b"].mean()) > float(one.x["b"].mean()) + 0.5


# ---- imputation ---------------------------------------------------------------------------------


def correlated_gaussian() -> Gaussian:
    return Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64))


def test_replacement_denoiser_sees_noised_known_values_and_returns_them():
    seen = {}

    def den(x, sigma):
        seen["x"] = x.clone()
        return x * 0.5

    values = torch.tensor([[2.0, 0.0, -1.0]])
    known = torch.tensor([[True, False, True]])
    eps = torch.ones(1, 3)
    wrapped = replacement_denoiser(den, values, known, eps)
    x = torch.full((1, 3), 7.0)
    out = wrapped(x, torch.tensor([0.5]))
    torch.testing.assert_close(seen["x"], torch.tensor([[2.5, 7.0, -0.5]]))
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.5, -1.0]]))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_keeps_the_known_entries(name):
    g = correlated_gaussian()
    n = 64
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    values = torch.tensor([1.5, 0.0], dtype=torch.float64).expand(n, 2)
    known = torch.tensor([True, False]).expand(n, 2)
    opts = {"rtol": 1e-2, "atol": 1e-2} if name == "rk45" else {}
    res = run_sampler(g, EDM(), noise=noise, sampler=name, steps=12, known=(values, known), **opts)
    assert (res.x[:, 0] == 1.5).all()
    assert torch.isfinite(res.x).all()
    # the unknown entry moves towards the conditional mean 0.8 * 1.5 = 1.2 (plain replacement is
    # biased towards the unconditional mean 0, so only its sign and rough size are checked here)
    assert 0.2 < float(res.x[:, 1].mean()) < 1.6, float(res.x[:, 1].mean())


def test_imputation_on_a_mapping_with_a_ragged_mask():
    def den(x, sigma):
        return {k: v / (1 + _bcast(sigma, v) ** 2) for k, v in x.items()}

    mask = {"p": torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool), "q": None}
    noise = {"p": torch.randn(2, 3, 2) * mask["p"][..., None], "q": torch.randn(2, 4)}
    values = {"p": torch.full((2, 3, 2), 5.0), "q": torch.zeros(2, 4)}
    known = {
        "p": torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool),
        "q": torch.zeros(2, 4, dtype=torch.bool),
    }
    x = impute(
        den, EDM(), noise=noise, values=values, known_mask=known, mask=mask, sampler="ddpm", steps=6
    )
    assert (x["p"][0, 0] == 5.0).all()
    assert (x["p"][0, 2] == 0).all() and (x["p"][1, 1:] == 0).all()  # padding stays zero


def test_repaint_resampling_recovers_the_closed_form_conditional():
    """x = (a, b) ~ N(0, [[1, .8], [.8, 1]]); given a = 1.5, b ~ N(1.2, 0.36) exactly.

    Plain replacement is biased towards the unconditional b ~ N(0, 1); RePaint's resampling
    (each step repeated with renoising) removes most of the bias.
    """
    g = correlated_gaussian()
    known = torch.tensor([True, False])
    values = torch.tensor([1.5, 0.0], dtype=torch.float64)
    mean, cov = g.conditional(known, values[known])
    assert float(mean) == pytest.approx(1.2) and float(cov) == pytest.approx(0.36)
    n = 3000
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def run(resample):
        return impute(
            g,
            EDM(),
            noise=noise,
            values=values.expand(n, 2),
            known_mask=known.expand(n, 2),
            resample=resample,
            sampler="ddpm",
            steps=100,
            generator=torch.Generator().manual_seed(1),
        )[:, 1]

    plain, resampled = run(1), run(10)
    assert abs(float(plain.mean()) - 1.2) > 0.3  # the known bias of plain replacement
    assert float(resampled.mean()) == pytest.approx(1.2, abs=0.08)
    assert float(resampled.var()) == pytest.approx(0.36, rel=0.15)


def test_reconstruction_guidance_moves_imputation_towards_the_conditional():
    """Same closed form as above: b | a = 1.5 ~ N(1.2, 0.36). Reconstruction guidance (weight 2)
    removes most of plain replacement's bias, and its gradient reaches the known entry's
    dependence on b through the denoiser (autograd under the sampler's no_grad)."""
    g = correlated_gaussian()
    known = torch.tensor([True, False])
    values = torch.tensor([1.5, 0.0], dtype=torch.float64)
    n = 3000
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def run(weight):
        with torch.no_grad():
            return impute(
                g, EDM(), noise=noise, values=values.expand(n, 2), known_mask=known.expand(n, 2),
                sampler="ddpm", steps=100, generator=torch.Generator().manual_seed(1),
                imputation_guidance=weight,
            )

    plain, guided = run(0.0), run(2.0)
    assert (guided[:, 0] == 1.5).all()  # the known entry is still exactly the value
    bias_plain = abs(float(plain[:, 1].mean()) - 1.2)
    bias_guided = abs(float(guided[:, 1].mean()) - 1.2)
    assert bias_plain > 0.3 and bias_guided < 0.5 * bias_plain
    assert abs(float(guided[:, 1].var()) - 0.36) < abs(float(plain[:, 1].var()) - 0.36)
