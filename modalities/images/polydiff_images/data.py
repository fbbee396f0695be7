"""Image data sets: the in-memory :class:`TensorImageDataset`, the built-in ``digits``
(scikit-learn's bundled 8x8 handwritten digits) and :func:`resolve_data_config`, which turns
``data.resolution`` / ``data.channels`` = 0 ("auto") into each source's natural size. The built-in
``shapes`` live in :mod:`polydiff_images.shapes`, user folders in :mod:`polydiff_images.folder`.

Items are ``{"x": (C, H, W) float32 in [-1, 1], "cond": {"label": int}}`` (no ``"cond"`` for
unlabelled data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from polydiff.config import data_source as core_data_source
from polydiff.protocol import DataError

#: number of images scikit-learn ships in ``load_digits``
DIGITS_SIZE = 1797
DIGITS_CLASSES = 10

#: ``data.resolution`` / ``data.channels`` value meaning "the source's natural size"
AUTO = 0
#: natural ``(resolution, channels)`` of the built-in data sets
NATIVE_SIZES: dict[str, tuple[int, int]] = {"digits": (16, 1), "shapes": (32, 3)}
#: resolution of a user folder under ``data.resolution = 0``
FOLDER_RESOLUTION = 32
#: smallest resolution the built-in data sets are drawn at
MIN_BUILTIN_RESOLUTION = 8


def data_source(data_config: Mapping[str, Any]) -> str:
    """Where the data comes from, as the core reads it: ``data.path``, else ``data.dataset``."""
    return core_data_source(data_config) or "digits"


def _whole(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return AUTO
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"data.{key} = {value!r}: expected a whole number (0 = auto)")
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"data.{key} = {value!r}: expected a whole number (0 = auto)") from None
    if not number.is_integer():
        raise DataError(f"data.{key} = {value!r}: expected a whole number (0 = auto)")
    return int(number)


def resolve_data_config(
    data_config: Mapping[str, Any], source: str | None = None, *, index: Any = None
) -> dict[str, Any]:
    """``data_config`` with the defaults filled in and ``resolution`` / ``channels`` resolved.

    0 (the default of both) means "auto", the source's natural size: ``digits`` 16 px and 1
    channel, ``shapes`` 32 px and 3 channels, a user folder :data:`FOLDER_RESOLUTION` (32) px and
    1 channel when every image in it is stored grayscale (see
    :func:`polydiff_images.folder.folder_channels`), else 3. A non-zero value is kept as it is.
    ``source`` defaults to :func:`data_source` (``data.path``, else ``data.dataset``); a name in
    :data:`NATIVE_SIZES` is the built-in, anything else a folder. ``index`` is the folder's
    :class:`~polydiff_images.folder.FolderIndex` when the caller has scanned it already.

    Every consumer of the two values (data sets, the network's input channels, inpainting inputs)
    goes through this function, so a run's ``config.json`` may keep the 0s: training, ``sample``
    and ``evaluate`` resolve them identically. Bad values raise a one-line :class:`DataError`.
    Returns a new dict; resolving twice gives the same values.
    """
    from polydiff_images import DEFAULT_CONFIG

    data = dict(DEFAULT_CONFIG["data"])
    data.update(data_config)
    resolution = _whole("resolution", data.get("resolution", AUTO))
    channels = _whole("channels", data.get("channels", AUTO))
    if resolution < 0:
        raise DataError(
            f"data.resolution = {resolution}: must be a positive number of pixels "
            "(or 0 for the data's natural size)"
        )
    if channels not in (AUTO, 1, 3):
        raise DataError(
            f"data.channels = {channels}: images have 1 (grayscale) or 3 (RGB) channels "
            "(or 0 for the data's own)"
        )
    source = data_source(data) if source is None else str(source)
    if source in NATIVE_SIZES:
        native_resolution, native_channels = NATIVE_SIZES[source]
        resolution = resolution or native_resolution
        channels = channels or native_channels
        if resolution < MIN_BUILTIN_RESOLUTION:
            raise DataError(
                f"data.resolution = {resolution}: {source} needs at least "
                f"{MIN_BUILTIN_RESOLUTION} pixels"
            )
    else:
        resolution = resolution or FOLDER_RESOLUTION
        if channels == AUTO:
            from polydiff_images.folder import folder_channels, scan_folder

            channels = folder_channels(index if index is not None else scan_folder(source))
    data["resolution"], data["channels"] = resolution, channels
    return data


class TensorImageDataset(Dataset):
    """Images held in memory, served as ``{"x": (C, H, W) float32 in [-1, 1], "cond": {"label"}}``.

    ``images`` is ``(N, C, H, W)``: float in [-1, 1], or uint8 in 0..255 (a quarter of the memory;
    mapped to [-1, 1] per item, 0 -> -1 and 255 -> 1). ``labels`` is ``(N,)`` integers or ``None``
    (unlabelled: items have no ``"cond"``); ``classes`` names the labels (``classes[label]``).

    ``hflip=True`` mirrors each item left-right with probability 1/2, decided by one draw from
    torch's global RNG per item. The trainer checkpoints and restores that RNG, and with
    ``data.num_workers = 0`` (the default) items are fetched in the main process between its own
    draws, so a resumed run repeats the flips of an uninterrupted one bit for bit. (With worker
    processes each worker's RNG is seeded by the loader from the run's seed and position: runs stay
    reproducible, but a resumed run draws other flips than an uninterrupted one.)
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        *,
        hflip: bool = False,
        classes: Sequence[str] | None = None,
    ):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if images.dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"images must be uint8 or float32, got {images.dtype}")
        self.data = images
        self.labels = labels
        self.hflip = bool(hflip)
        self.classes: tuple[str, ...] | None = None if classes is None else tuple(classes)

    @property
    def images(self) -> Tensor:
        """All images as float32 in [-1, 1], never flipped (a new tensor for uint8 storage)."""
        return to_float(self.data)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        x = to_float(self.data[index])
        if self.hflip and bool(torch.randint(2, ())):
            x = x.flip(-1)
        item: dict[str, Any] = {"x": x}
        if self.labels is not None:
            item["cond"] = {"label": int(self.labels[index])}
        return item


def to_float(images: Tensor) -> Tensor:
    """uint8 0..255 -> float32 [-1, 1]; float32 passes through unchanged."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images


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

    Sized by :func:`resolve_data_config` (auto: 16x16 gray; ``data.channels = 3`` repeats the
    gray image in each channel).
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; available: train, test")
    data_config = resolve_data_config(data_config, "digits")
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


def data_classes(data_config: Mapping[str, Any]) -> int:
    """How many classes the configured source has: digits 10, shapes 6, a folder its class
    folders (0 when flat, i.e. unlabelled)."""
    source = data_source(data_config)
    if source == "digits":
        return DIGITS_CLASSES
    if source == "shapes":
        from polydiff_images.shapes import SHAPE_CLASSES

        return len(SHAPE_CLASSES)
    from polydiff_images.folder import scan_folder

    index = scan_folder(source)
    return 0 if index.labels is None else len(index.classes)
