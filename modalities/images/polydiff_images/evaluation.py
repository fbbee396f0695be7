"""Sample quality for images, the way image-generation papers measure it, scaled to ``digits``.

For the built-in ``digits`` the images are mapped to the penultimate layer of the shipped reference
classifier (:mod:`polydiff_images.classifier`) and compared with the held-out *test* split there:

- ``fd``: Fréchet distance between Gaussians fitted to the two feature sets (FID's formula);
- ``kid``: kernel distance, unbiased MMD² with the cubic polynomial kernel (KID's formula);
- ``precision`` / ``recall``: Kynkäänniemi et al. 2019 with ``k = 3``;
- ``class_tv``: total variation between the classifier's predicted-class histogram of the samples
  and the label histogram of the *train* split, the class balance the model learned (0 = the
  data's balance). Not the test split's: its ~300 labels are themselves off the data's balance
  by TV 0.11 for ``digits``, which would swamp what the metric is for;
- ``confident``: share of samples the classifier assigns a class with probability >= 0.9.

The ``reference/...`` keys score real digits exactly like the samples: a random subset of the
*train* split, of the same size as the samples (at most the whole split), against the same test
split. That is what a perfect generator would score with this many samples, the floor to read
the sample numbers against (finite-sample bias included).

For a user folder (or another resolution or channel count) the user may name a feature
extractor (``polydiff evaluate RUN --features module:name`` or a TorchScript file, see
:func:`polydiff.metrics.load_feature_extractor`): ``fd``, ``kid``, ``precision`` and ``recall``
are computed in its feature space, and ``class_tv`` / ``confident`` too when it returns
``(features, class probabilities)``. Without one only ``kid``, ``precision`` and ``recall`` are
computed, in pixel space. ``features`` names the space used and ``note`` says it in a sentence.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff import metrics as M
from polydiff.config import data_source
from polydiff_images.data import build_dataset as build_images_dataset
from polydiff_images.defaults import DEFAULT_CONFIG

__all__ = ["CONFIDENCE", "PR_K", "evaluate_images", "metrics_for_modality"]

#: probability above which a sample counts as confidently classified
CONFIDENCE = 0.9
#: neighbourhood size of improved precision / recall (the paper's default)
PR_K = 3


def _images(x: Any, name: str) -> Tensor:
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected (N, C, H, W) images, got shape {tuple(x.shape)}")
    return x.clamp(-1.0, 1.0)  # what the writer saves and a viewer sees


def _classifier_for(dataset: str | None, shape: tuple[int, ...]):
    from polydiff_images.classifier import REFERENCE_CLASSIFIERS, load_reference_classifier

    if dataset not in REFERENCE_CLASSIFIERS or tuple(shape) != REFERENCE_CLASSIFIERS[dataset][1]:
        return None
    return load_reference_classifier(dataset)


def _score(
    fake: Tensor,
    real: Tensor,
    *,
    fake_probs: Tensor | None,
    real_labels: Tensor | None,
    num_classes: int,
    k: int,
    fd: bool = True,
) -> dict[str, float | int]:
    out: dict[str, float | int] = {"n_samples": len(fake)}
    if fd:
        out["fd"] = M.frechet_distance(fake, real)
    out["kid"] = M.kernel_distance(fake, real)
    out["precision"], out["recall"] = M.precision_recall(real, fake, k=k)
    if fake_probs is not None:
        if real_labels is not None:
            out["class_tv"] = M.class_coverage_tv(fake_probs.argmax(1), real_labels, num_classes)
        out["confident"] = M.confident_fraction(fake_probs, CONFIDENCE)
    return out


def evaluate_images(
    samples: Tensor,
    dataset: str | None,
    real_test: Tensor,
    real_test_labels: Tensor | None = None,
    *,
    real_train: Tensor | None = None,
    k: int = PR_K,
    seed: int = 0,
    extractor: Any = None,
    extractor_name: str = "user features",
    class_reference: Tensor | None = None,
) -> dict[str, float | int | str]:
    """Score generated images against held-out real ones; see the module docstring for the keys.

    ``samples`` and ``real_test`` are ``(N, C, H, W)`` in [-1, 1] (samples are clamped there
    first). ``dataset`` names a built-in data set with a reference classifier (``"digits"``);
    anything else (``None``, a path) measures in pixel space. ``class_reference`` (integer
    labels, default ``real_test_labels``) is the class balance ``class_tv`` compares with. With ``real_train`` the ``reference/...`` keys score a random subset of it
    (``seed``) of the samples' size the same way. ``extractor`` (a callable on image batches
    returning features or ``(features, probabilities)``) replaces the reference classifier.
    """
    fake = _images(samples, "samples")
    test = _images(real_test, "real_test")
    if fake.shape[1:] != test.shape[1:]:
        raise ValueError(
            f"samples are {tuple(fake.shape[1:])} but the real images {tuple(test.shape[1:])}"
        )
    train = None if real_train is None else _images(real_train, "real_train")
    if len(fake) <= k or len(test) <= k:
        raise ValueError(f"need more than k = {k} samples and real images, got {len(fake)} and {len(test)}")
    clf = None if extractor is not None else _classifier_for(dataset, tuple(fake.shape[1:]))
    result: dict[str, float | int | str] = {}
    ref_subset = None
    if train is not None:
        gen = torch.Generator().manual_seed(seed)
        take = min(len(fake), len(train))
        ref_subset = train[torch.randperm(len(train), generator=gen)[:take]]
    if class_reference is None:
        class_reference = real_test_labels
    labels = None if class_reference is None else torch.as_tensor(class_reference).long()

    predict = None
    if extractor is not None:
        result["features"] = extractor_name
        result["note"] = f"metrics computed in the feature space of {extractor_name}"
        predict = M.batched_extractor(extractor)
    elif clf is not None:
        result["features"] = f"{dataset}-classifier"
        result["note"] = f"metrics computed in the feature space of the shipped {dataset} classifier"
        predict = clf.predict
    if predict is not None:
        f_fake, p_fake = predict(fake)
        f_test, _ = predict(test)
        num_classes = clf.num_classes if clf is not None else 0 if p_fake is None else p_fake.shape[1]
        kw = {"real_labels": labels if num_classes else None, "num_classes": num_classes, "k": k}
        result.update(_score(f_fake, f_test, fake_probs=p_fake, **kw))
        if ref_subset is not None:
            f_ref, p_ref = predict(ref_subset)
            ref = _score(f_ref, f_test, fake_probs=p_ref, **kw)
            result.update({M.REFERENCE_PREFIX + key: v for key, v in ref.items()})
    else:
        result["features"] = "pixels"
        result["note"] = (
            "no reference classifier for this data and no feature extractor named "
            "(--features): precision, recall and kernel distance computed in pixel space"
        )
        # a Gaussian fit to hundreds of raw pixels is meaningless: no FD in pixel space
        kw = {"fake_probs": None, "real_labels": None, "num_classes": 0, "k": k, "fd": False}
        result.update(_score(fake.flatten(1), test.flatten(1), **kw))
        if ref_subset is not None and len(ref_subset) > k:
            ref = _score(ref_subset.flatten(1), test.flatten(1), **kw)
            result.update({M.REFERENCE_PREFIX + key: v for key, v in ref.items()})
    result["n_real"] = len(test)
    return result


def _stack(dataset: Any) -> tuple[Tensor, Tensor | None]:
    """All images (and integer labels, when every item has one) of a data set."""
    images = getattr(dataset, "images", None)
    if isinstance(images, Tensor):
        return images, getattr(dataset, "labels", None)
    items = [dataset[i] for i in range(len(dataset))]
    xs = torch.stack([torch.as_tensor(it["x"]) for it in items])
    labels = [(it.get("cond") or {}).get("label") for it in items]
    return xs, None if any(v is None for v in labels) else torch.as_tensor(labels).long()


def metrics_for_modality(modality: Any = None) -> dict[str, Any]:
    """The mapping ``ImagesModality.metrics()`` returns: ``{"quality": evaluate(samples, config)}``.

    ``evaluate`` rebuilds the run's data (its ``data.path`` or built-in ``data.dataset``) with
    ``modality.build_dataset`` (default: :func:`polydiff_images.data.build_dataset`, the images
    modality's own), then calls
    :func:`evaluate_images` with the test split as the reference and the train split for the
    ``reference/...`` row.
    """

    def evaluate(samples: Any, config: Mapping[str, Any]) -> dict[str, float | int | str]:
        build_dataset = build_images_dataset if modality is None else modality.build_dataset
        data = copy.deepcopy(DEFAULT_CONFIG["data"])
        data.update(config.get("data") or {})
        source = data_source(data)
        test_x, test_y = _stack(build_dataset(source, config, "test"))
        train_x, train_y = _stack(build_dataset(source, config, "train"))
        builtin = None if data.get("path") else str(data["dataset"])
        seed = int((config.get("sample") or {}).get("seed", 0))
        spec = (config.get("eval") or {}).get("features")
        # the CLI hands over the extractor it already loaded to validate the name
        extractor = (config.get("eval") or {}).get("extractor")
        if spec and extractor is None:
            from polydiff.metrics import load_feature_extractor

            extractor = load_feature_extractor(str(spec))
        result = evaluate_images(
            samples, builtin, test_x, test_y, real_train=train_x, seed=seed,
            extractor=extractor, extractor_name=str(spec) if spec else "", class_reference=train_y,
        )
        default = DEFAULT_CONFIG["data"]
        same_split = all(
            int(data.get(key, default[key])) == int(default[key]) for key in ("test_size", "split_seed")
        )
        if result["features"] != "pixels" and not same_split:
            result["warning"] = (
                "data.test_size/split_seed differ from the classifier's training split: "
                "some test images were seen by the classifier"
            )
        return result

    return {"quality": evaluate}
