"""Writing image samples: one PNG per sample and a nearest-neighbour upscaled grid, each file
written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: PIL modes by channel count
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def to_uint8(samples: Any) -> np.ndarray:
    """``(B, C, H, W)`` values in [-1, 1] (tensor or array) -> ``(B, H, W, C)`` uint8."""
    if hasattr(samples, "detach"):
        samples = samples.detach().float().cpu().numpy()
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 3:  # a single image without the batch dimension
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(arr.shape)}")
    if arr.shape[1] not in _MODES:
        raise ValueError(f"images need 1, 3 or 4 channels, got {arr.shape[1]}")
    arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0)
    arr = np.clip(arr, -1.0, 1.0)
    arr = np.rint((arr + 1.0) * 127.5).astype(np.uint8)
    return arr.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``(B, H, W, C)`` uint8 images into one ``(rows*(H+pad)+pad, ..., C)`` array."""
    b, h, w, c = images.shape
    ncols = ncols or max(1, math.ceil(math.sqrt(b)))
    nrows = max(1, math.ceil(b / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 128, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def _save(array: np.ndarray, path: Path) -> None:
    """One PNG through :func:`polydiff.atomic.atomic_write`: a process killed mid-write leaves
    no truncated file under the final name."""
    from PIL import Image

    from polydiff.atomic import atomic_write

    c = array.shape[-1]
    data = array[..., 0] if c == 1 else array
    image = Image.fromarray(np.ascontiguousarray(data)).convert(_MODES[c])
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_samples(
    samples: Any,
    out_dir: str | Path,
    *,
    mask: Any = None,
    cond: Mapping[str, Any] | None = None,
    prefix: str = "sample",
    upscale: int | None = None,
) -> list[Path]:
    """Write ``<prefix>_grid.png`` and ``<prefix>_0000.png`` ... into ``out_dir``.

    ``samples`` is ``(B, C, H, W)`` in [-1, 1] (clamped); 1 channel is written as grayscale, 3 as
    RGB. The grid is enlarged by nearest neighbour (``upscale``; default: each image at least
    64 pixels high). ``mask`` and ``cond`` are accepted for the contract and not used by images.
    Returns the paths, the grid first.
    """
    images = to_uint8(samples)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = images.shape[1]
    if upscale is None:
        upscale = max(1, 64 // h)
    grid = make_grid(images)
    if upscale > 1:
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    grid_path = out / f"{prefix}_grid.png"
    _save(grid, grid_path)
    paths = [grid_path]
    width = max(4, len(str(len(images) - 1)))
    for i, img in enumerate(images):
        path = out / f"{prefix}_{i:0{width}d}.png"
        _save(img, path)
        paths.append(path)
    return paths


def write_inpainting(
    samples: Any,
    values: Any,
    known_mask: Any,
    out_dir: str | Path,
    *,
    prefix: str = "inpaint",
    upscale: int | None = None,
    max_results: int = 8,
) -> list[Path]:
    """Write ``<prefix>_panel.png`` — input | mask | masked input | results — and each result.

    ``values`` / ``known_mask`` are the inputs of the first sample (``(B, C, H, W)``, the same for
    every sample when one image was inpainted several times); the mask shows white where pixels
    were generated, and the masked input shows those pixels mid-grey. Returns the paths, the panel
    first.
    """
    paths = write_samples(samples, out_dir, prefix=prefix, upscale=upscale)
    results = to_uint8(samples)[:max_results]
    given = to_uint8(values)[:1]
    keep = np.asarray(known_mask.detach().cpu() if hasattr(known_mask, "detach") else known_mask)
    keep = (keep[:1] > 0).transpose(0, 2, 3, 1)  # (1, H, W, C)
    mask_img = np.where(keep, 0, 255).astype(np.uint8)
    masked = np.where(keep, given, 128).astype(np.uint8)
    panel = make_grid(np.concatenate([given, mask_img, masked, results]), ncols=3 + len(results))
    h = results.shape[1]
    scale = upscale or max(1, 64 // h)
    if scale > 1:
        panel = panel.repeat(scale, axis=0).repeat(scale, axis=1)
    panel_path = Path(out_dir) / f"{prefix}_panel.png"
    _save(panel, panel_path)
    return [panel_path, *paths]
