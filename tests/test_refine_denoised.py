"""Contract 2.1's ``refine_denoised``: called on every denoiser call while sampling, after
guidance, and its result is what the sampler steps with; a plugin without it is not wrapped."""

import pytest
import torch
from toy_spaces import ToyClouds, exact_denoiser

from polydiff import hooks
from polydiff.config import resolve
from polydiff.generate import generate
from polydiff.protocol import signature_problems


class Refined(ToyClouds):
    """Refines every clean estimate to zero and records each call."""

    def __init__(self):
        self.calls = []

    def refine_denoised(self, denoised, sigma, cond, config):
        self.calls.append((torch.as_tensor(sigma).clone(), dict(cond), config))
        return denoised * 0.0


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "ddpm"])
def test_the_sampler_steps_with_the_refined_estimate(sampler):
    modality = Refined()
    cfg = resolve(modality)
    denoiser = exact_denoiser(hooks.noise_space(modality, cfg), None)
    x, _, nfe = generate(modality, cfg, denoiser, n=4, sampler=sampler, steps=5)
    assert len(modality.calls) == nfe > 0
    assert all(call[2] is cfg for call in modality.calls)
    levels = [float(c[0].max()) for c in modality.calls]
    assert levels == sorted(levels, reverse=True)  # one call per step, from high noise down
    # every estimate refined to 0: the sampler's last step lands on it
    assert float(x.abs().max()) < 1e-6


def test_without_refine_the_sample_is_the_denoisers():
    plain, refined = ToyClouds(), Refined()
    cfg = resolve(plain)
    space = hooks.noise_space(plain, cfg)
    a, layout, _ = generate(plain, cfg, exact_denoiser(space, None), n=4, sampler="dpmpp_2m", steps=5)
    assert float(a.abs().max()) > 0.1
    b, _, _ = generate(refined, cfg, exact_denoiser(space, None), n=4, sampler="dpmpp_2m", steps=5)
    assert float(b.abs().max()) < 1e-6


def test_a_refine_with_the_wrong_signature_is_named():
    class Wrong(ToyClouds):
        def refine_denoised(self, denoised):
            return denoised

    assert any("refine_denoised" in p for p in signature_problems(Wrong()))
