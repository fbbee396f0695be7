"""Sample-quality metrics on feature tensors, shared by every modality.

The functions here take ``(N, D)`` feature tensors (or labels / probabilities) and know nothing
about where the features came from: a modality maps its samples to features (a classifier's
penultimate layer for images, a descriptor for graphs, raw values as a last resort) and calls them.
All arithmetic runs in float64 on the CPU, so the numbers do not depend on the device or on the
precision the features were computed in.

The contract with modalities, used by ``polydiff evaluate`` and :func:`evaluate_samples`:
``Modality.metrics()`` returns a mapping ``name -> evaluate`` where ::

    evaluate(samples, config, *, mask=None, cond=None) -> dict[str, float | int | str]

``samples`` is the generated state on the CPU (a tensor or a mapping of tensors), ``config`` the
run's full configuration. ``mask`` and ``cond`` (the sampling layout) are passed only when the
callable's signature names them or takes ``**kwargs``. Keys starting with ``reference/`` hold the
same metric for real data scored the same way ("what real data scores"); the command line shows
them beside the sample's value.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "REFERENCE_PREFIX",
    "MetricFn",
    "batched_extractor",
    "class_coverage_tv",
    "confident_fraction",
    "evaluate_samples",
    "frechet_distance",
    "kernel_distance",
    "precision_recall",
]

#: result keys with this prefix are the real-data reference for the key without it
REFERENCE_PREFIX = "reference/"

MetricFn = Callable[..., Mapping[str, Any]]


def _features(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise ValueError(f"{name}: expected (N, D) features, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or infinity")
    return x


def _psd_sqrt(mat: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    vals, vecs = torch.linalg.eigh((mat + mat.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to two sets of features.

    .. math::
        d^2 = \lVert \mu_a - \mu_b \rVert^2
              + \operatorname{Tr}\bigl(\Sigma_a + \Sigma_b - 2 (\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}\bigr)

    with sample means and unbiased (``N - 1``) covariances, as in Heusel et al. 2017, "GANs Trained
    by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (FID) and its reference
    code. ``Tr((Σa Σb)^{1/2})`` equals ``Tr((Σa^{1/2} Σb Σa^{1/2})^{1/2})``; the latter is symmetric,
    so it is the sum of square roots of the eigenvalues of a symmetric PSD matrix, which stays real
    and stable where a general matrix square root would not (singular or ill-conditioned Σ).
    Returns ``d^2`` (the number FID reports), in float64, never negative.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = torch.cov(a.T, correction=1).reshape(a.shape[1], a.shape[1])
    cov_b = torch.cov(b.T, correction=1).reshape(b.shape[1], b.shape[1])
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    trace_cross = eig.sqrt().sum()
    value = (mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_cross
    return max(float(value), 0.0)


def _kth_neighbour_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of ``x`` to its ``k``-th nearest other row."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(math.inf)
    return d.kthvalue(k, dim=1).values


def _in_manifold(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 4096) -> Tensor:
    """For each point: does it lie in at least one ball ``|p - c_i| <= r_i``?"""
    inside = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], centres)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
    Metric for Assessing Generative Models").

    Each set approximates its manifold by the union of balls around its points, each ball's radius
    the distance to the point's ``k``-th nearest neighbour in the same set (itself excluded):

    .. math::
        f(\phi, \Phi) = 1 \text{ if } \exists \phi' \in \Phi:
            \lVert \phi - \phi' \rVert_2 \le \lVert \phi' - \mathrm{NN}_k(\phi', \Phi) \rVert_2

        \text{precision} = \tfrac{1}{|\Phi_g|} \sum_{\phi_g} f(\phi_g, \Phi_r), \qquad
        \text{recall} = \tfrac{1}{|\Phi_r|} \sum_{\phi_r} f(\phi_r, \Phi_g)

    Precision: the share of generated samples inside the real manifold (fidelity). Recall: the
    share of real samples inside the generated manifold (diversity). The paper uses ``k = 3``.
    """
    r, g = _features(real, "real"), _features(fake, "fake")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"feature sizes differ: {r.shape[1]} and {g.shape[1]}")
    if k < 1 or k >= min(len(r), len(g)):
        raise ValueError(f"k = {k} needs more than k points in each set ({len(r)} real, {len(g)} fake)")
    precision = _in_manifold(g, r, _kth_neighbour_radii(r, k)).double().mean()
    recall = _in_manifold(r, g, _kth_neighbour_radii(g, k)).double().mean()
    return float(precision), float(recall)


def _histogram(values: Tensor, num_classes: int, name: str) -> Tensor:
    values = torch.as_tensor(values).detach().cpu()
    if values.is_floating_point():
        hist = values.to(torch.float64).flatten()
        if hist.numel() != num_classes:
            raise ValueError(f"{name}: a histogram needs {num_classes} entries, got {hist.numel()}")
        if (hist < 0).any() or hist.sum() <= 0:
            raise ValueError(f"{name}: a histogram needs non-negative entries with a positive sum")
    else:
        labels = values.flatten().long()
        if labels.numel() == 0:
            raise ValueError(f"{name}: no labels")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name}: labels must lie in [0, {num_classes})")
        hist = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    return hist / hist.sum()


def class_coverage_tv(pred_labels: Tensor, ref: Tensor, num_classes: int) -> float:
    r"""Total-variation distance between the class histogram of samples and a reference.

    .. math:: \mathrm{TV}(p, q) = \tfrac12 \sum_{c=1}^{C} \lvert p_c - q_c \rvert \in [0, 1]

    ``p`` is the normalised histogram of ``pred_labels`` (integer class ids, e.g. a classifier's
    argmax on generated samples); ``ref`` is either integer labels (their histogram is taken) or a
    floating-point histogram of ``num_classes`` counts or probabilities (normalised here). 0 means
    the classes come out in the data's proportions; 1 means disjoint supports (total mode collapse
    onto classes the data does not have). Class-distribution checks of this kind go back to the
    mode-counting of Metz et al. 2017 and Srivastava et al. 2017 (VEEGAN).
    """
    p = _histogram(pred_labels, num_classes, "pred_labels")
    q = _histogram(ref, num_classes, "ref")
    return float(0.5 * (p - q).abs().sum())


def confident_fraction(probs: Tensor, threshold: float = 0.9) -> float:
    """Share of samples whose top class probability is at least ``threshold``.

    ``probs`` is ``(N, C)`` class probabilities (softmax of a reference classifier's logits). A
    low value means many samples are ambiguous to the classifier: blurred or between classes. It
    reads like the confidence term of the Inception Score (Salimans et al. 2016), thresholded.
    """
    p = torch.as_tensor(probs).detach().cpu()
    if not p.is_floating_point():
        p = p.to(torch.float64)
    # compared in the input's precision: float32 0.9 counts as >= 0.9
    if p.dim() != 2 or len(p) == 0:
        raise ValueError(f"probs: expected (N, C) probabilities, got shape {tuple(p.shape)}")
    return float((p.max(dim=1).values >= threshold).double().mean())


def _mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sxx + syy - 2 * kxy.mean()


def kernel_distance(
    a: Tensor,
    b: Tensor,
    *,
    subset_size: int | None = None,
    num_subsets: int = 100,
    seed: int = 0,
) -> float:
    r"""Kernel distance (KID): the unbiased estimate of the squared MMD with a cubic polynomial
    kernel (Bińkowski et al. 2018, "Demystifying MMD GANs").

    .. math::
        k(x, y) = \left(\tfrac{x^\top y}{d} + 1\right)^3

        \widehat{\mathrm{MMD}}^2 = \tfrac{1}{m(m-1)} \sum_{i \ne j} k(a_i, a_j)
            + \tfrac{1}{n(n-1)} \sum_{i \ne j} k(b_i, b_j) - \tfrac{2}{mn} \sum_{i, j} k(a_i, b_j)

    Unbiased, so it can come out slightly negative when the sets match. With ``subset_size`` the
    estimate is the mean over ``num_subsets`` random subsets of that size drawn without
    replacement (the paper's protocol, seeded by ``seed``); by default it uses all points once.
    """
    x, y = _features(a, "a"), _features(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} and {y.shape[1]}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("kernel_distance needs at least 2 samples per set")
    if subset_size is None or subset_size >= min(len(x), len(y)):
        return float(_mmd2_unbiased(x, y))
    if subset_size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}")
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64)
    for _ in range(num_subsets):
        ia = torch.randperm(len(x), generator=gen)[:subset_size]
        ib = torch.randperm(len(y), generator=gen)[:subset_size]
        total += _mmd2_unbiased(x[ia], y[ib])
    return float(total / num_subsets)


# ------------------------------------------------------------------- the modality contract


def _call_metric(fn: MetricFn, samples: Any, config: Mapping[str, Any], context: Mapping[str, Any]):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: the minimal call
        return fn(samples, config)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return fn(samples, config, **context)
    names = {p.name for p in params}
    return fn(samples, config, **{k: v for k, v in context.items() if k in names})


def evaluate_samples(
    modality: Any,
    samples: Any,
    config: Mapping[str, Any],
    *,
    mask: Any = None,
    cond: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float | int | str]]:
    """Run every metric ``modality.metrics()`` names on ``samples``; ``{name: {key: value}}``.

    Raises :class:`polydiff.errors.UserError` when the modality defines no metrics, and
    ``TypeError`` when a metric returns something other than a mapping of numbers and strings.
    """
    from polydiff.errors import UserError
    from polydiff.hooks import call

    metrics = dict(call(modality, "metrics") or {})
    name = getattr(modality, "name", type(modality).__name__)
    if not metrics:
        raise UserError(f"the {name} modality defines no metrics to evaluate with")
    out: dict[str, dict[str, float | int | str]] = {}
    for metric, fn in metrics.items():
        result = _call_metric(fn, samples, config, {"mask": mask, "cond": cond})
        if not isinstance(result, Mapping):
            raise TypeError(f"metric {metric!r} of {name} returned {type(result).__name__}, not a dict")
        clean: dict[str, float | int | str] = {}
        for key, value in result.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item()
            if not isinstance(value, (int, float, str)):
                raise TypeError(f"metric {metric!r} of {name}: {key} = {value!r} is not a number or string")
            clean[str(key)] = value
        out[str(metric)] = clean
    return out


#: the members a torch.export archive may hold for :func:`load_feature_extractor` (under the
#: archive's root folder): anything else (AOTInductor binaries, executorch blobs, ...) is refused
_PT2_MEMBERS = ("archive_format", "archive_version", "byteorder", ".data/", "models/",
                "data/weights/", "data/constants/", "data/sample_inputs/", "extra/")


def pt2_problem(path: Any) -> str | None:
    """Why loading the ``torch.export`` archive at ``path`` would unpickle something, or
    ``None`` when it holds only JSON, raw tensor bytes and sample inputs that load with
    ``weights_only=True``.

    ``torch.export.load`` unpickles weights and constants stored with ``use_pickle``, custom and
    opaque objects, and retries sample inputs with ``weights_only=False``: an archive needing any
    of these is refused before ``torch.export.load`` sees it.
    """
    import io
    import json
    import zipfile

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return f"not a torch.export archive ({' '.join(str(exc).split()) or type(exc).__name__})"
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if not any(n.split("/", 1)[-1] == "archive_format" for n in names):
            return "not a torch.export archive (no archive_format)"
        for name in names:
            member = name.split("/", 1)[1] if "/" in name else name
            if not member.startswith(_PT2_MEMBERS):
                return f"holds {member}, which polydiff does not load"
            try:
                if member.startswith(("data/weights/", "data/constants/")) and member.endswith(
                    "config.json"
                ):
                    config = json.loads(archive.read(name)).get("config", {})
                    for fqn, meta in config.items():
                        if meta.get("use_pickle"):
                            return f"{fqn} is stored as a pickle, which polydiff never loads"
                        kind = str(meta.get("path_name", ""))
                        if member.startswith("data/constants/") and not kind.startswith("tensor_"):
                            return f"constant {fqn} is a pickled object, which polydiff never loads"
                elif member.startswith("data/sample_inputs/"):
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure here means "refuse"
                first = " ".join(str(exc).split())[:160] or type(exc).__name__
                return f"{member} cannot be read without unpickling ({first})"
    return None


def batched_extractor(
    extractor: Callable[[Tensor], Any], batch_size: int = 256, prob_dtype: torch.dtype = torch.float32
) -> Callable[[Tensor], tuple[Tensor, Tensor | None]]:
    """``x -> (features (N, F), class probabilities (N, K) or None)``: a user's extractor (see
    :func:`load_feature_extractor`) called on batches of ``batch_size`` without gradients, its
    features flattened to float32 and its probabilities, when it returns them, in ``prob_dtype``."""

    def predict(x: Tensor) -> tuple[Tensor, Tensor | None]:
        feats, probs = [], []
        with torch.no_grad():
            for chunk in x.split(batch_size):
                out = extractor(chunk)
                f, p = out if isinstance(out, (tuple, list)) else (out, None)
                feats.append(torch.as_tensor(f).float().flatten(1))
                if p is not None:
                    probs.append(torch.as_tensor(p).to(prob_dtype))
        return torch.cat(feats), torch.cat(probs) if probs else None

    return predict


def load_feature_extractor(spec: str) -> Callable[[Tensor], Any]:
    """The feature extractor a user names for ``polydiff evaluate --features SPEC``.

    ``SPEC`` is a saved ``torch.export`` program (``*.pt2``; refused when loading it would
    unpickle anything, see :func:`pt2_problem`), a TorchScript file (``*.pt``, loaded on the CPU
    by TorchScript's own restricted reader) or
    ``package.module:name``, where ``name`` is a module instance or a function, or a class,
    instantiated with no arguments. The extractor maps a batch of samples to ``(N, F)``
    features, or to a pair ``(features, class probabilities)``. Raises :class:`UserError` with one
    line when it cannot be loaded.
    """
    import importlib
    from pathlib import Path

    from polydiff.errors import UserError

    path = Path(spec)
    if path.suffix in (".pt", ".pts", ".jit", ".pt2") or path.is_file():
        if not path.is_file():
            raise UserError(f"--features {spec}: file not found")
        if path.suffix == ".pt2":
            problem = pt2_problem(path)
            if problem:
                raise UserError(f"{path}: refused: {problem}")
            try:
                return torch.export.load(str(path)).module()
            except (RuntimeError, ValueError, OSError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"{path}: not a torch.export program ({first})") from None
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: not a TorchScript model ({first})") from None
        return model.eval()
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"--features {spec}: expected a TorchScript file or package.module:name")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise UserError(f"--features {spec}: cannot import {module_name} ({exc})") from None
    except AttributeError:
        raise UserError(f"--features {spec}: {module_name} has no attribute {attr!r}") from None
    if isinstance(obj, type):
        obj = obj()
    if isinstance(obj, torch.nn.Module):
        obj.eval()
    if not callable(obj):
        raise UserError(f"--features {spec}: {attr} is not callable")
    return obj
