"""What every image data source shares: the in-memory :class:`TensorImageDataset` and the rules
for ``data.resolution`` / ``data.channels``.

The sources (:mod:`~polydiff_images.digits`, :mod:`~polydiff_images.shapes`,
:mod:`~polydiff_images.folder`) build on this module and :mod:`polydiff_images.data` dispatches
to them; this module imports none of them, so none of them imports another.

Items are ``{"x": (C, H, W) float32 in [-1, 1], "cond": {"label": int}}`` (no ``"cond"`` for
unlabelled data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polydiff.config import data_source as core_data_source
from polydiff.protocol import DataError
from polydiff_images.defaults import DEFAULT_CONFIG

__all__ = [
    "AUTO",
    "FOLDER_RESOLUTION",
    "MIN_BUILTIN_RESOLUTION",
    "NATIVE_SIZES",
    "TensorImageDataset",
    "builtin_size",
    "data_source",
    "requested_size",
    "to_float",
]

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


def requested_size(data_config: Mapping[str, Any]) -> dict[str, Any]:
    """``data_config`` over the defaults, with ``resolution`` and ``channels`` checked and made
    ints (:data:`AUTO` = 0 still meaning "the source's natural size"). Bad values raise a one-line
    :class:`DataError`. Returns a new dict."""
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
    data["resolution"], data["channels"] = resolution, channels
    return data


def builtin_size(data_config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """:func:`requested_size` with auto values replaced by the built-in ``name``'s
    :data:`NATIVE_SIZES`, and at least :data:`MIN_BUILTIN_RESOLUTION` pixels."""
    data = requested_size(data_config)
    native_resolution, native_channels = NATIVE_SIZES[name]
    data["resolution"] = data["resolution"] or native_resolution
    data["channels"] = data["channels"] or native_channels
    if data["resolution"] < MIN_BUILTIN_RESOLUTION:
        raise DataError(
            f"data.resolution = {data['resolution']}: {name} needs at least "
            f"{MIN_BUILTIN_RESOLUTION} pixels"
        )
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
