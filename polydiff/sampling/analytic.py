"""Closed-form targets for testing samplers: their exact denoisers, densities and a distance.

For data x_0 and the unscaled noisy state x = x_0 + sigma * eps, the exact denoiser is the posterior
mean D(x, sigma) = E[x_0 | x]. For these targets it is known in closed form, so a sampler driven
by it must reproduce the target exactly in the limit of many steps (DESIGN.md §5).

- :class:`GaussianMixture`: weights pi_k, means mu_k, standard deviations tau_k — one per
  component (isotropic) or one per component and dimension (diagonal, anisotropic). The noisy
  marginal is sum_k pi_k N(mu_k, diag(tau_k^2 + sigma^2)) and
  D = sum_k w_k(x) [mu_k + tau_k^2 / (tau_k^2 + sigma^2) (x - mu_k)] (elementwise), w_k the
  posterior weights.
- :class:`Gaussian`: one Gaussian with full covariance S: D = mu + S (S + sigma^2 I)^-1 (x - mu).

States of any rank ``(B, ...)`` are flattened to ``(B, d)``; ``sigma`` is a scalar or ``(B,)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _sigma_col(sigma: Tensor | float, x: Tensor) -> Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    return s.expand(x.shape[0]).unsqueeze(1)


class GaussianMixture:
    """A mixture of isotropic or diagonal Gaussians with an exact denoiser.

    Args:
        weights: ``(K,)`` mixture weights (normalised here).
        means: ``(K, d)`` component means.
        stds: a float, ``(K,)`` (isotropic components) or ``(K, d)`` (diagonal: one standard
            deviation per component and dimension).
    """

    def __init__(self, weights: Tensor, means: Tensor, stds: Tensor | float):
        means = torch.as_tensor(means, dtype=torch.float64)
        self.means = means
        weights = torch.as_tensor(weights, dtype=torch.float64)
        self.weights = weights / weights.sum()
        stds = torch.as_tensor(stds, dtype=torch.float64)
        self.diagonal = stds.ndim == 2
        self.stds = stds.clone() if self.diagonal else stds.expand(means.shape[0]).clone()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def _params(self, like: Tensor):
        return (
            self.weights.to(like),
            self.means.to(like),
            self.stds.to(like),
        )

    def sample(
        self, n: int, generator: torch.Generator | None = None, return_labels: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``n`` exact draws ``(n, d)`` in float64 (and their component labels)."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        scale = self.stds[labels] if self.diagonal else self.stds[labels, None]
        x = self.means[labels] + scale * eps
        return (x, labels) if return_labels else x

    def mean(self) -> Tensor:
        """The exact mean ``(d,)``."""
        return self.weights @ self.means

    def cov(self) -> Tensor:
        """The exact covariance ``(d, d)``: sum_k pi_k (tau_k^2 I + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = (self.weights[:, None] * self.means).T @ self.means
        within = self.weights @ self.stds**2
        within = torch.diag(within) if self.diagonal else within * torch.eye(self.dim, dtype=m.dtype)
        return second + within - torch.outer(m, m)

    def log_components(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log pi_k + log N(x; mu_k, (tau_k^2 + sigma^2) I) for each component -> ``(B, K)``."""
        w, mu, tau = self._params(x)
        xf = _flat(x)
        if self.diagonal:
            var = tau**2 + _sigma_col(sigma, xf).unsqueeze(2) ** 2  # (B, K, d)
            sq = ((xf.unsqueeze(1) - mu) ** 2 / var).sum(2)
            return w.log() - 0.5 * sq - 0.5 * torch.log(2 * math.pi * var).sum(2)
        var = tau**2 + _sigma_col(sigma, xf) ** 2  # (B, K)
        sq = (xf * xf).sum(1, keepdim=True) - 2 * xf @ mu.T + (mu * mu).sum(1)  # (B, K)
        d = xf.shape[1]
        return w.log() - 0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Log-density of the noisy marginal at level ``sigma`` (0: the data) -> ``(B,)``."""
        return torch.logsumexp(self.log_components(x, sigma), dim=1)

    def responsibilities(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Posterior component probabilities ``(B, K)``."""
        logc = self.log_components(x, sigma)
        # exp(l - logsumexp l): torch.softmax is slow on small float64 inputs under thread contention
        return (logc - torch.logsumexp(logc, dim=1, keepdim=True)).exp()

    def assign(self, x: Tensor) -> Tensor:
        """The most probable component of each sample ``(B,)``."""
        return self.log_components(x).argmax(dim=1)

    def denoiser(self, x: Tensor, sigma: Tensor | float, **_: object) -> Tensor:
        """The exact posterior mean E[x_0 | x_0 + sigma eps = x], same shape as ``x``."""
        _, mu, tau = self._params(x)
        xf = _flat(x)
        s2 = _sigma_col(sigma, xf) ** 2
        w = self.responsibilities(xf, sigma)  # (B, K)
        if self.diagonal:
            shrink = tau**2 / (tau**2 + s2.unsqueeze(2))  # (B, K, d)
            # sum_k w_k (mu_k + shrink_k (x - mu_k)), elementwise in d
            out = (w.unsqueeze(2) * (mu + shrink * (xf.unsqueeze(1) - mu))).sum(1)
            return out.reshape(x.shape)
        shrink = tau**2 / (tau**2 + s2)  # (B, K)
        # sum_k w_k (mu_k + shrink_k (x - mu_k)) = x sum_k w_k shrink_k + sum_k w_k (1 - shrink_k) mu_k
        out = xf * (w * shrink).sum(1, keepdim=True) + (w * (1 - shrink)) @ mu
        return out.reshape(x.shape)

    __call__ = denoiser


class Gaussian:
    """One Gaussian N(mean, cov) with full covariance and an exact denoiser."""

    def __init__(self, mean: Tensor, cov: Tensor):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        self.evals, self.evecs = torch.linalg.eigh(self.cov)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + (eps * self.evals.clamp_min(0).sqrt()) @ self.evecs.T

    def denoiser(self, x: Tensor, sigma: Tensor | float, **_: object) -> Tensor:
        """D = mu + S (S + sigma^2 I)^-1 (x - mu), through the eigendecomposition of S."""
        xf = _flat(x)
        lam, v = self.evals.to(xf), self.evecs.to(xf)
        s2 = _sigma_col(sigma, xf) ** 2
        coef = (xf - self.mean.to(xf)) @ v  # (B, d) in the eigenbasis
        out = self.mean.to(xf) + (coef * lam / (lam + s2)) @ v.T
        return out.reshape(x.shape)

    __call__ = denoiser

    def conditional(self, known: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the unknown entries given ``x[known] = values`` (known: bool (d,))."""
        a, b = known, ~known
        s_aa = self.cov[a][:, a]
        s_ba = self.cov[b][:, a]
        gain = s_ba @ torch.linalg.inv(s_aa)
        mean = self.mean[b] + gain @ (values.to(torch.float64) - self.mean[a])
        cov = self.cov[b][:, b] - gain @ s_ba.T
        return mean, cov


def sliced_wasserstein(
    x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> Tensor:
    """Sliced Wasserstein-2 distance between two equal-size samples ``(n, d)``.

    sqrt of the mean over random unit directions of W2^2 of the 1-D projections, each computed
    exactly by sorting.
    """
    x, y = _flat(x).to(torch.float64), _flat(y).to(torch.float64)
    if x.shape != y.shape:
        raise ValueError(
            f"samples must have equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    dirs = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    # sort each projection along a contiguous last dimension (much faster than dim=0)
    px, _ = torch.sort((x @ dirs).T.contiguous(), dim=1)
    py, _ = torch.sort((y @ dirs).T.contiguous(), dim=1)
    return ((px - py) ** 2).mean().sqrt()
