"""Image data sets: the built-in ``digits`` (scikit-learn's bundled 8x8 handwritten digits).

Items are ``{"x": (C, H, W) float32 in [-1, 1], "cond": {"label": int}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

#: number of images scikit-learn ships in ``load_digits``
DIGITS_SIZE = 1797
DIGITS_CLASSES = 10


class TensorImageDataset(Dataset):
    """Images already in memory: ``images`` (N, C, H, W) in [-1, 1], ``labels`` (N,) or ``None``."""

    def __init__(self, images: Tensor, labels: Tensor | None = None):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"x": self.images[index]}
        if self.labels is not None:
            item["cond"] = {"label": int(self.labels[index])}
        return item


def digits_split_indices(n: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed permutation of ``range(n)``: the first ``n - test_size`` train, the rest test."""
    if not 0 < test_size < n:
        raise ValueError(f"test_size must lie in (0, {n}), got {test_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n - test_size]), np.sort(perm[n - test_size :])


def load_digits_tensors(resolution: int = 16) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as ``(N, 1, resolution, resolution)`` float32 in [-1, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1)  # 0..16
    if resolution != images.shape[-1]:
        # bilinear interpolation stays inside [0, 16]: every output is a convex combination
        images = F.interpolate(
            images, size=(resolution, resolution), mode="bilinear", align_corners=False
        )
    images = (images / 16.0 * 2.0 - 1.0).clamp_(-1.0, 1.0).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return images, labels


def build_digits(data_config: Mapping[str, Any], split: str) -> TensorImageDataset:
    """The ``digits`` data set for ``split`` (``"train"`` or ``"test"``), deterministic."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; available: train, test")
    resolution = int(data_config.get("resolution", 16))
    if resolution < 8:
        raise ValueError(f"data.resolution must be >= 8 for digits, got {resolution}")
    test_size = int(data_config.get("test_size", 297))
    seed = int(data_config.get("split_seed", 0))
    images, labels = load_digits_tensors(resolution)
    train_idx, test_idx = digits_split_indices(len(images), test_size, seed)
    idx = torch.from_numpy(train_idx if split == "train" else test_idx)
    return TensorImageDataset(images[idx].contiguous(), labels[idx].contiguous())
