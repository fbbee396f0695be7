"""Inputs of `polydiff sample --inpaint IMAGE --mask MASK`: the image and the region to fill.

The image goes through the training data's preprocessing (channels, shorter side resized to the
resolution, centre crop, [-1, 1]). The mask is a file — white (>= 128 after conversion to
grayscale) marks pixels to generate, black pixels are kept, the convention of image editors'
inpainting tools — resized to the resolution by nearest neighbour, or one of :data:`PRESETS`.
Returned masks follow the core's convention: 1 = known (kept), 0 = generate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.protocol import DataError

#: preset masks by the region they regenerate
PRESETS = ("left", "right", "top", "bottom", "center", "border")


def _data_config(config: Mapping[str, Any]) -> tuple[int, int]:
    """``(resolution, channels)`` of the run's data, auto values resolved like training's."""
    from polydiff_images.data import resolve_data_config

    data = resolve_data_config(config.get("data") or {})
    return int(data["resolution"]), int(data["channels"])


def read_image(path: Path, config: Mapping[str, Any]) -> Tensor:
    """One image file as ``(C, H, W)`` float32 in [-1, 1], preprocessed like the training data."""
    from polydiff_images.data import to_float
    from polydiff_images.folder import load_image

    resolution, channels = _data_config(config)
    return to_float(torch.from_numpy(load_image(Path(path), resolution, channels).copy()))


def preset_mask(name: str, resolution: int) -> Tensor:
    """``(H, W)`` with 1 = keep for a preset; "center" regenerates the middle half-size square,
    "border" everything but it."""
    r = resolution
    keep = torch.ones(r, r)
    half, q = r // 2, r // 4
    if name == "left":
        keep[:, :half] = 0
    elif name == "right":
        keep[:, half:] = 0
    elif name == "top":
        keep[:half] = 0
    elif name == "bottom":
        keep[half:] = 0
    elif name == "center":
        keep[q : r - q, q : r - q] = 0
    elif name == "border":
        keep.zero_()
        keep[q : r - q, q : r - q] = 1
    else:
        raise DataError(f"--mask {name}: not a file and not a preset ({', '.join(PRESETS)})")
    return keep


def read_mask(spec: str, config: Mapping[str, Any], like: Tensor) -> Tensor:
    """A mask file or preset name -> ``like``-shaped float mask, 1 = keep, 0 = generate."""
    c, h, w = like.shape
    path = Path(spec)
    if spec in PRESETS and not path.is_file():
        keep = preset_mask(spec, h)
    elif path.exists():
        from PIL import Image

        from polydiff_images.folder import open_image

        im = open_image(path)  # the guarded reader: bombs, FIFOs, broken files are one line
        try:
            gray = im.convert("L").resize((w, h), Image.Resampling.NEAREST)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot convert the mask ({exc.__class__.__name__})") from None
        keep = torch.from_numpy((np.asarray(gray) < 128).astype(np.float32))
    else:
        raise DataError(f"{spec}: mask file not found and not a preset ({', '.join(PRESETS)})")
    if keep.all():
        raise DataError(f"{spec}: the mask marks no pixel to generate (white = generate)")
    return keep.unsqueeze(0).expand(c, h, w).contiguous()
