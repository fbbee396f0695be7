"""The built-in ``digits``: scikit-learn's bundled 8x8 handwritten digits, labelled 0-9.

Served at 16x16 gray by default (``data.resolution`` / ``data.channels`` = 0, auto), else at the
size they give (bilinear resampling; 3 channels repeat the gray image), see
:func:`~polydiff_images.data.resolve_data_config`. The split is a fixed permutation:
``data.test_size`` images (seeded by ``data.split_seed``) are ``test``, the rest ``train``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polydiff_images.datasets_common import TensorImageDataset, builtin_size

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_SIZE",
    "build_digits",
    "digits_split_indices",
    "load_digits_tensors",
]

#: number of images scikit-learn ships in ``load_digits``
DIGITS_SIZE = 1797
DIGITS_CLASSES = 10


def digits_split_indices(n: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed permutation of ``range(n)``: the first ``n - test_size`` train, the rest test."""
    if not 0 < test_size < n:
        raise ValueError(f"test_size must lie in (0, {n}), got {test_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n - test_size]), np.sort(perm[n - test_size :])


def load_digits_tensors(resolution: int = 16, channels: int = 1) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as ``(N, channels, resolution, resolution)`` float32 in [-1, 1] and int64
    labels (3 channels: the gray image in each)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1)  # 0..16
    if resolution != images.shape[-1]:
        # bilinear interpolation stays inside [0, 16]: every output is a convex combination
        images = F.interpolate(
            images, size=(resolution, resolution), mode="bilinear", align_corners=False
        )
    images = (images / 16.0 * 2.0 - 1.0).clamp_(-1.0, 1.0)
    images = images.expand(-1, channels, -1, -1).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return images, labels


def build_digits(data_config: Mapping[str, Any], split: str) -> TensorImageDataset:
    """The ``digits`` data set for ``split`` (``"train"`` or ``"test"``), deterministic.

    Sized by :func:`~polydiff_images.datasets_common.builtin_size` (auto: 16x16 gray;
    ``data.channels = 3`` repeats the gray image in each channel).
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; available: train, test")
    data_config = builtin_size(data_config, "digits")
    test_size = int(data_config.get("test_size", 297))
    seed = int(data_config.get("split_seed", 0))
    images, labels = load_digits_tensors(data_config["resolution"], data_config["channels"])
    train_idx, test_idx = digits_split_indices(len(images), test_size, seed)
    idx = torch.from_numpy(train_idx if split == "train" else test_idx)
    hflip = bool(data_config.get("hflip", False)) and split == "train"
    return TensorImageDataset(
        images[idx].contiguous(),
        labels[idx].contiguous(),
        hflip=hflip,
        classes=[str(d) for d in range(DIGITS_CLASSES)],
    )
