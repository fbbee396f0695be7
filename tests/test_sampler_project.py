"""``run_sampler(..., project=...)``: a modality's noise-space projection holds through every sampler."""

from __future__ import annotations

import pytest
import torch

from polydiff.sampling import SAMPLERS, run_sampler
from polydiff.sde import EDM

B, N = 3, 7


def centre(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero centre of mass of a (B, N, 3) cloud over its valid points (mask (B, N))."""
    m = mask[..., None].to(x.dtype)
    mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
    return (x - mean) * m


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact denoiser of N(1, a I) data: its output is not centred even for a centred x."""
    a = 2.0
    s2 = sigma.reshape(-1, 1, 1) ** 2
    return 1.0 + (x - 1.0) * a / (a + s2)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1)


@pytest.fixture
def setup():
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(B, N)
    mask[0, 5:] = 0
    mask[2, 3:] = 0
    noise = torch.randn(B, N, 3, generator=gen) * mask[..., None]  # not centred
    return noise, mask


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [2, 4])
def test_every_sampler_stays_in_the_projected_subspace(name, steps, setup):
    noise, mask = setup
    common = dict(
        noise=noise, sampler=name, steps=steps, mask=mask,
        generator=torch.Generator().manual_seed(1),
    )
    x = run_sampler(gaussian_denoiser, EDM(), project=centre, **common).x
    torch.testing.assert_close(masked_mean(x, mask), torch.zeros(B, 3), atol=1e-5, rtol=0)
    assert torch.all(x[mask == 0] == 0)
    # the check has teeth: without the projection the samples are off-centre
    plain = run_sampler(gaussian_denoiser, EDM(), **common).x
    assert masked_mean(plain, mask).abs().max() > 0.1


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_fresh_noise_is_projected_when_sampling_stops_above_zero(name, setup):
    """Stopping at the smallest nonzero level returns a state made of the prior, the denoiser's
    outputs and (for stochastic samplers) fresh noise: each of them must be projected."""
    noise, mask = setup
    sde = EDM()
    x = run_sampler(
        gaussian_denoiser, sde, noise=noise, sampler=name, steps=3, mask=mask, project=centre,
        generator=torch.Generator().manual_seed(1), denoise_final=False,
    ).x
    # float32 rounding of a run that starts at sigma_max: relative to that scale
    atol = 1e-5 * sde.sigma_max
    torch.testing.assert_close(masked_mean(x, mask), torch.zeros(B, 3), atol=atol, rtol=0)
