"""Image data by source: the dispatcher over the built-in ``digits``
(:mod:`polydiff_images.digits`), the built-in ``shapes`` (:mod:`polydiff_images.shapes`) and user
folders (:mod:`polydiff_images.folder`), which share :mod:`polydiff_images.datasets_common`.

:func:`build_dataset` builds a split of any source, :func:`resolve_data_config` turns
``data.resolution`` / ``data.channels`` = 0 ("auto") into each source's natural size, and
:func:`data_classes` counts a source's classes. The sources' own names are re-exported here.

Items are ``{"x": (C, H, W) float32 in [-1, 1], "cond": {"label": int}}`` (no ``"cond"`` for
unlabelled data).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polydiff.protocol import DataError
from polydiff_images.datasets_common import (
    AUTO,
    FOLDER_RESOLUTION,
    MIN_BUILTIN_RESOLUTION,
    NATIVE_SIZES,
    TensorImageDataset,
    builtin_size,
    data_source,
    requested_size,
    to_float,
)
from polydiff_images.defaults import DEFAULT_CONFIG
from polydiff_images.digits import (
    DIGITS_CLASSES,
    DIGITS_SIZE,
    build_digits,
    digits_split_indices,
    load_digits_tensors,
)
from polydiff_images.folder import build_folder, folder_size, scan_folder
from polydiff_images.shapes import SHAPE_CLASSES, build_shapes

__all__ = [
    "AUTO",
    "DIGITS_CLASSES",
    "DIGITS_SIZE",
    "FOLDER_RESOLUTION",
    "MIN_BUILTIN_RESOLUTION",
    "NATIVE_SIZES",
    "TensorImageDataset",
    "build_dataset",
    "build_digits",
    "data_classes",
    "data_source",
    "digits_split_indices",
    "load_digits_tensors",
    "resolve_data_config",
    "to_float",
]


#: the largest ``data.resolution`` accepted: beyond it a typo (100000) would ask the allocator for
#: terabytes instead of failing in one line
MAX_RESOLUTION = 1024


def _check_resolution(data_config: Mapping[str, Any]) -> None:
    value = requested_size(data_config)["resolution"]
    if value > MAX_RESOLUTION:
        raise DataError(
            f"data.resolution = {value}: expected at most {MAX_RESOLUTION} pixels (0 = auto)"
        )


def build_dataset(source: str | Path, config: Mapping[str, Any], split: str) -> TensorImageDataset:
    """The ``split`` of the built-in ``source`` or of the folder at ``source``, its ``data``
    settings taken from the run ``config`` over the defaults (``ImagesModality.build_dataset``).

    Each builder resolves ``data.resolution`` and ``data.channels`` like
    :func:`resolve_data_config`.
    """
    data_cfg = dict(DEFAULT_CONFIG["data"])
    data_cfg.update(config.get("data") or {})
    _check_resolution(data_cfg)
    if str(source) == "digits":
        return build_digits(data_cfg, split)
    if str(source) == "shapes":
        return build_shapes(data_cfg, split)
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{path}: not found, and not a built-in data set (built-in: {', '.join(NATIVE_SIZES)})"
        )
    return build_folder(path, data_cfg, split)


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
    _check_resolution(data_config)
    data = requested_size(data_config)
    source = data_source(data) if source is None else str(source)
    if source in NATIVE_SIZES:
        return builtin_size(data, source)
    return folder_size(data, source, index=index)


def data_classes(data_config: Mapping[str, Any]) -> int:
    """How many classes the configured source has: digits 10, shapes 6, a folder its class
    folders (0 when flat, i.e. unlabelled)."""
    source = data_source(data_config)
    if source == "digits":
        return DIGITS_CLASSES
    if source == "shapes":
        return len(SHAPE_CLASSES)
    index = scan_folder(source)
    return 0 if index.labels is None else len(index.classes)
