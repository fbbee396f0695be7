"""Predictor–corrector sampling (Song et al. 2021, Alg. 2 and 4).

Predictor: the reverse-diffusion step x' = x + (s^2 - s'^2) score + sqrt(s^2 - s'^2) z, the ancestral
discretisation of the reverse SDE in the sigma view (for VE it is Song et al.'s Eq. 47; VP and
sub-VP reduce to it in the unscaled view). Corrector: ``n_corrector`` Langevin steps at the current
level, x <- x + e score + sqrt(2 e) z with e = 2 (snr |z| / |score|)^2 (Alg. 4; alpha = 1 in the
unscaled view), the norms averaged over the batch as in their code. score = (D - x) / s^2.
"""

from __future__ import annotations

import math

from polydiff.sampling.common import sigma_batch
from polydiff.sampling.registry import register_sampler


@register_sampler(
    "pc",
    stochastic=True,
    description="Predictor–corrector: reverse-diffusion predictor + Langevin corrector (Song et al. 2021)",
    nfe="steps * (1 + n_corrector)",
)
def sample_pc(
    denoiser, x, sigmas, *, noise, callback=None, snr: float = 0.16, n_corrector: int = 1
):
    """Song et al. (2021) Alg. 2 with the Langevin corrector of Alg. 4; the step to sigma = 0 returns D."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        sb = sigma_batch(sigmas[i], x)
        for _ in range(n_corrector):
            score = (denoiser(x, sb) - x) / s**2
            z = noise(x)
            # Song et al.'s rule with norms averaged over the batch (per-sample ratios are heavy-tailed
            # in low dimension); kept as a 0-dim tensor, no host sync
            ratio = snr * z.norm(dim=1).mean() / score.norm(dim=1).mean().clamp_min(1e-30)
            step = 2 * ratio**2
            x = x + step * score + (2 * step).sqrt() * z
        denoised = denoiser(x, sb)
        if callback is not None:
            callback(i, x, denoised)
        var = s**2 - s_next**2
        x = x + (var / s**2) * (denoised - x)
        if s_next > 0:
            x = x + math.sqrt(var) * noise(x)
    return x
