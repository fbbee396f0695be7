"""The built-in ``shapes``: procedural, labelled images of six filled shapes on black.

Classes (label order): circle, square, triangle, star, cross, heart. Each image holds one shape in
one of eight bright colours, with a random size (circumradius 16-32 % of the side), position (fully
inside the frame) and rotation (hearts stay within 25 degrees of upright). Shapes are drawn with
PIL at 4x the resolution and box-filtered down (anti-aliased edges). Labels are exactly balanced.

The set is fixed: ``train`` holds :data:`SHAPES_TRAIN` images drawn from seed 0, ``test``
:data:`SHAPES_TEST` from seed 1 (``data.test_size`` and ``data.split_seed`` apply to ``digits``
and folders, not here). It is drawn at its native 32x32 RGB when ``data.resolution`` and
``data.channels`` are 0 (auto, the defaults), else at the size and channels they give (1:
grayscale luma of the colours; any resolution from 8 up), see
:func:`~polydiff_images.data.resolve_data_config`. The reference classifier and its metrics need
the native size. :func:`render_shapes` draws any number of images from any seed; the same
arguments give identical tensors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff_images.datasets_common import TensorImageDataset, builtin_size

__all__ = [
    "SHAPE_CLASSES",
    "SHAPES_CHANNELS",
    "SHAPES_RESOLUTION",
    "SHAPES_SEEDS",
    "SHAPES_TEST",
    "SHAPES_TRAIN",
    "build_shapes",
    "render_shapes",
]

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "heart")
#: images per split (each a multiple of the number of classes: exactly balanced)
SHAPES_TRAIN = 6000
SHAPES_TEST = 1200
SHAPES_SEEDS = {"train": 0, "test": 1}
#: the native size, the one the reference classifier reads
SHAPES_RESOLUTION = 32
SHAPES_CHANNELS = 3
#: supersampling factor of the drawing
OVERSAMPLE = 4
PALETTE = (
    (235, 50, 50),  # red
    (255, 150, 30),  # orange
    (250, 230, 50),  # yellow
    (60, 200, 70),  # green
    (60, 220, 230),  # cyan
    (50, 110, 255),  # blue
    (230, 70, 220),  # magenta
    (240, 240, 240),  # white
)
BACKGROUND = (0, 0, 0)
#: circumradius as a fraction of the image side
RADIUS_RANGE = (0.16, 0.32)


def _heart() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    pts = np.stack([x, -y], 1)  # image y points down
    pts -= (pts.max(0) + pts.min(0)) / 2  # centre the bounding box
    return pts / np.abs(pts).max()


def _regular(k: int, phase: float = -math.pi / 2) -> np.ndarray:
    a = phase + 2.0 * math.pi * np.arange(k) / k
    return np.stack([np.cos(a), np.sin(a)], 1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _cross(half_width: float = 0.32) -> np.ndarray:
    w = half_width
    return np.array(
        [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w),
         (-1, -w), (-w, -w)],
        dtype=np.float64,
    )


#: unit outlines (circumradius 1, centred); None = the circle, drawn as an ellipse
OUTLINES: dict[str, np.ndarray | None] = {
    "circle": None,
    "square": _regular(4, -math.pi / 4),
    "triangle": _regular(3),
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
}
#: rotation range in radians: a full symmetry period, or a tilt for the heart
ROTATION = {
    "circle": (0.0, 0.0),
    "square": (0.0, math.pi / 2),
    "triangle": (0.0, 2 * math.pi / 3),
    "star": (0.0, 2 * math.pi / 5),
    "cross": (0.0, math.pi / 2),
    "heart": (-math.radians(25), math.radians(25)),
}


def render_shapes(
    n: int, seed: int, resolution: int = SHAPES_RESOLUTION, channels: int = SHAPES_CHANNELS
) -> tuple[Tensor, Tensor]:
    """``n`` images ``(n, channels, resolution, resolution)`` uint8 and their int64 labels.

    Deterministic in its arguments (numpy's PCG64 from ``seed`` and PIL's rasteriser).
    """
    from PIL import Image, ImageDraw

    if resolution < 8:
        raise ValueError(f"data.resolution must be >= 8 for shapes, got {resolution}")
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3, got {channels}")
    k = len(SHAPE_CLASSES)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % k)
    radius = rng.uniform(*RADIUS_RANGE, size=n) * resolution
    # the centre keeps the whole circumscribed circle one pixel inside the frame
    u = rng.uniform(0.0, 1.0, size=(n, 2))
    centre = (radius + 1)[:, None] + u * (resolution - 2 * (radius + 1))[:, None]
    turn = rng.uniform(0.0, 1.0, size=n)
    colour = rng.integers(len(PALETTE), size=n)

    big = resolution * OVERSAMPLE
    out = np.empty((n, channels, resolution, resolution), dtype=np.uint8)
    for i in range(n):
        name = SHAPE_CLASSES[labels[i]]
        img = Image.new("RGB", (big, big), BACKGROUND)
        draw = ImageDraw.Draw(img)
        fill = PALETTE[colour[i]]
        cx, cy = centre[i] * OVERSAMPLE
        r = radius[i] * OVERSAMPLE
        outline = OUTLINES[name]
        if outline is None:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            lo, hi = ROTATION[name]
            a = lo + turn[i] * (hi - lo)
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            pts = outline @ rot.T * r + (cx, cy)
            draw.polygon([tuple(p) for p in pts.tolist()], fill=fill)
        small = img.reduce(OVERSAMPLE)  # mean of each 4x4 block
        if channels == 1:
            out[i, 0] = np.asarray(small.convert("L"))
        else:
            out[i] = np.asarray(small).transpose(2, 0, 1)
    return torch.from_numpy(out), torch.from_numpy(labels.astype(np.int64))


@functools.lru_cache(maxsize=4)
def _cached(n: int, seed: int, resolution: int, channels: int) -> tuple[Tensor, Tensor]:
    return render_shapes(n, seed, resolution, channels)


def build_shapes(data_config: Mapping[str, Any], split: str) -> TensorImageDataset:
    """The ``shapes`` data set for ``split`` (``"train"`` or ``"test"``), deterministic."""
    if split not in SHAPES_SEEDS:
        raise ValueError(f"unknown split {split!r}; available: train, test")
    data_config = builtin_size(data_config, "shapes")
    resolution, channels = int(data_config["resolution"]), int(data_config["channels"])
    n = SHAPES_TRAIN if split == "train" else SHAPES_TEST
    images, labels = _cached(n, SHAPES_SEEDS[split], resolution, channels)
    return TensorImageDataset(
        images,
        labels,
        hflip=bool(data_config.get("hflip", False)) and split == "train",
        classes=SHAPE_CLASSES,
    )
