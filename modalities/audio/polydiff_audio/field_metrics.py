"""The metrics of DiffWave's unconditional SC09 table (Kong et al. 2021, Table 2 and its appendix),
on features and class probabilities of a reference classifier.

- ``fid``: Fréchet distance between Gaussians fitted to the samples' and the *train* set's
  features (the core's :func:`polydiff.metrics.frechet_distance`); DiffWave's train row is 0 by
  construction, its test row the floor a perfect generator reaches.
- ``is``: Inception Score (Salimans et al. 2016), ``exp(E_x KL(p(y|x) ‖ p(y)))`` with ``p(y)`` the
  samples' mean prediction; at most the number of classes.
- ``mis``: modified Inception Score (Gurumurthy et al. 2017, DeLiGAN),
  ``exp(E_{x_i} E_{x_j} KL(p(y|x_i) ‖ p(y|x_j)))`` over all ordered pairs of samples (the empirical
  expectation of two independent draws, pairs of one sample with itself included): high when each
  sample is confident and the samples disagree.
- ``am``: AM score (Zhou et al. 2018), ``KL(p_train(y) ‖ p(y)) + E_x H(p(y|x))`` with ``p_train(y)``
  the classifier's mean prediction over the train set: the class balance the data has plus the
  samples' uncertainty; lower is better, 0 for confident samples in the train set's balance.
- ``ndb_k``: NDB/K (Richardson & Weiss 2018, "On GANs and GMMs"): the train features are split into
  K bins by K-means; a bin is *statistically different* when a two-sided two-proportion z-test
  (pooled variance) rejects, at significance 0.05, that the samples fall into it as often as the
  train set does (samples go to the nearest centre); the share of such bins.

All arithmetic in float64 on the CPU.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polydiff import metrics as M

__all__ = [
    "NDBBins",
    "am_score",
    "field_scores",
    "inception_score",
    "kmeans",
    "modified_inception_score",
    "proportion_z",
]

#: bins of NDB: the notes train split has 512 clips, ~25 a bin
NDB_BINS = 20
NDB_ALPHA = 0.05


def _probs(p: Tensor, name: str) -> Tensor:
    p = torch.as_tensor(p).detach().to("cpu", torch.float64)
    if p.dim() != 2 or len(p) == 0:
        raise ValueError(f"{name}: expected (N, C) probabilities, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name}: probabilities must be finite and non-negative")
    return p / p.sum(1, keepdim=True)


def _feats(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.dim() != 2 or not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite (N, D) features, got shape {tuple(x.shape)}")
    return x


def _kl_rows(p: Tensor, q: Tensor) -> Tensor:
    """``KL(p_i ‖ q_i)`` per row, ``0 · log 0 = 0``; ``q`` floored at 1e-300 so a zero where ``p``
    has mass gives a large finite number instead of infinity."""
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q.clamp_min(1e-300))).sum(-1)


def inception_score(probs: Tensor) -> float:
    """``exp(mean_i KL(p_i ‖ mean_j p_j))``: 1 for identical predictions, ``C`` for confident
    predictions spread evenly over ``C`` classes."""
    p = _probs(probs, "probs")
    return float(torch.exp(_kl_rows(p, p.mean(0, keepdim=True).expand_as(p)).mean()))


def modified_inception_score(probs: Tensor, chunk: int = 256) -> float:
    """``exp(mean_{i,j} KL(p_i ‖ p_j))`` over all ordered pairs (``i = j`` included)."""
    p = _probs(probs, "probs")
    neg_entropy = torch.special.xlogy(p, p).sum(1)  # sum_c p_ic log p_ic
    log_q = p.clamp_min(1e-300).log()
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(p), chunk):
        rows = p[start : start + chunk]
        cross = rows @ log_q.T  # sum_c p_ic log p_jc
        total += (neg_entropy[start : start + chunk, None] - cross).sum()
    return float(torch.exp(total / len(p) ** 2))


def am_score(probs: Tensor, train_probs: Tensor) -> float:
    """``KL(mean train prediction ‖ mean sample prediction) + mean_i H(p_i)``, in nats."""
    p, t = _probs(probs, "probs"), _probs(train_probs, "train_probs")
    if p.shape[1] != t.shape[1]:
        raise ValueError(f"class counts differ: {p.shape[1]} and {t.shape[1]}")
    entropy = -torch.special.xlogy(p, p).sum(1).mean()
    return float(_kl_rows(t.mean(0), p.mean(0)) + entropy)


def kmeans(x: Tensor, k: int, *, seed: int = 0, iters: int = 100) -> Tensor:
    """``(k, D)`` centres: k-means++ seeding (Arthur & Vassilvitskii 2007), then Lloyd's
    iterations until the assignment stops changing; an empty cluster takes the point farthest
    from its centre."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if k < 1 or k > len(x):
        raise ValueError(f"k = {k} bins need between 1 and {len(x)} (the points) ")
    gen = torch.Generator().manual_seed(seed)
    centres = [x[int(torch.randint(len(x), (1,), generator=gen))]]
    d2 = (x - centres[0]).square().sum(1)
    for _ in range(1, k):
        weights = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / len(d2))
        centres.append(x[int(torch.multinomial(weights, 1, generator=gen))])
        d2 = torch.minimum(d2, (x - centres[-1]).square().sum(1))
    c = torch.stack(centres)
    assign = None
    for _ in range(iters):
        dist = torch.cdist(x, c)
        new = dist.argmin(1)
        if assign is not None and bool((new == assign).all()):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
            else:
                far = int(dist.gather(1, assign[:, None]).squeeze(1).argmax())
                c[j] = x[far]
    return c


def proportion_z(count_a: Tensor, n_a: int, count_b: Tensor, n_b: int) -> Tensor:
    """Two-proportion z statistic with the pooled variance, per bin; 0 where both are empty."""
    pa, pb = count_a.double() / n_a, count_b.double() / n_b
    pooled = (count_a.double() + count_b.double()) / (n_a + n_b)
    se = (pooled * (1 - pooled) * (1.0 / n_a + 1.0 / n_b)).sqrt()
    return torch.where(se > 0, (pa - pb) / se.clamp_min(1e-300), torch.zeros_like(se))


class NDBBins:
    """K-means bins of the train features and the NDB/K test of any set against them."""

    def __init__(self, train_features: Tensor, k: int = NDB_BINS, *, seed: int = 0, alpha: float = NDB_ALPHA):
        train = _feats(train_features, "train_features")
        self.k = min(int(k), len(train))
        self.alpha = alpha
        self.centres = kmeans(train, self.k, seed=seed)
        self.train_counts = self.counts(train)
        self.n_train = len(train)

    def counts(self, feats: Tensor) -> Tensor:
        f = _feats(feats, "features")
        return torch.bincount(torch.cdist(f, self.centres).argmin(1), minlength=self.k)

    def different(self, feats: Tensor) -> Tensor:
        """``(K,)`` booleans: bins whose share of ``feats`` differs significantly from the train set's."""
        counts = self.counts(feats)
        z = proportion_z(counts, int(counts.sum()), self.train_counts, self.n_train)
        # two-sided p-value from the standard normal: P(|Z| >= |z|) = erfc(|z| / sqrt 2)
        p = torch.tensor([math.erfc(abs(float(v)) / math.sqrt(2.0)) for v in z], dtype=torch.float64)
        return p < self.alpha

    def ndb_k(self, feats: Tensor) -> float:
        return float(self.different(feats).double().mean())


def field_scores(
    feats: Tensor, probs: Tensor | None, train_feats: Tensor, train_probs: Tensor | None, bins: NDBBins,
) -> dict[str, float]:
    """``fid``, ``ndb_k`` and, with probabilities, ``is``, ``mis``, ``am`` of one set of clips."""
    out = {"fid": M.frechet_distance(feats, train_feats)}
    if probs is not None:
        out["is"] = inception_score(probs)
        out["mis"] = modified_inception_score(probs)
        if train_probs is not None:
            out["am"] = am_score(probs, train_probs)
    out["ndb_k"] = bins.ndb_k(feats)
    return out
