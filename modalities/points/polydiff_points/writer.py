"""Writing clouds: a binary PLY per cloud and one PNG of three orthographic views per cloud, gridded.

Completions (``write_inpainting``) colour the known points blue and the generated ones orange, in
the PLY (vertex colours) and in the PNG. Every file goes through :func:`polydiff.atomic.atomic_write`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from polydiff.atomic import atomic_write_bytes

__all__ = ["ply_bytes", "render_views", "write_inpainting", "write_samples"]

KNOWN = (40, 90, 200)
GENERATED = (235, 120, 20)
PLAIN = (30, 30, 30)
VIEW = 96  # pixels per view
# (horizontal axis, vertical axis) of each view: top (x, y), front (x, z), side (y, z)
VIEWS = ((0, 1), (0, 2), (1, 2))


def ply_bytes(points: np.ndarray, colors: np.ndarray | None = None) -> bytes:
    """A binary little-endian PLY of ``points`` ``(n, 3)``, with uint8 ``colors`` ``(n, 3)`` if given."""
    n = points.shape[0]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    props = ["property float x", "property float y", "property float z"]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        props += ["property uchar red", "property uchar green", "property uchar blue"]
    data = np.empty(n, dtype=fields)
    data["x"], data["y"], data["z"] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        data["red"], data["green"], data["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {n}", *props,
                        "end_header"]) + "\n"
    return header.encode("ascii") + data.tobytes()


def render_views(points: np.ndarray, colors: np.ndarray, extent: float) -> np.ndarray:
    """Three orthographic views side by side: ``(VIEW, 3 VIEW, 3)`` uint8, white background.
    Points nearer the viewer are drawn last and darker, so depth reads at a glance."""
    img = np.full((VIEW, 3 * VIEW, 3), 255, dtype=np.uint8)
    for v, (a, b) in enumerate(VIEWS):
        depth_axis = 3 - a - b
        order = np.argsort(points[:, depth_axis])
        u = ((points[order, a] / extent + 1) / 2 * (VIEW - 3)).round().astype(int) + 1
        w = ((1 - (points[order, b] / extent + 1) / 2) * (VIEW - 3)).round().astype(int) + 1
        keep = (u >= 0) & (u < VIEW - 1) & (w >= 0) & (w < VIEW - 1)
        d = points[order, depth_axis]
        shade = 0.55 + 0.45 * (d - d.min()) / max(float(np.ptp(d)), 1e-6)
        col = (colors[order] * shade[:, None]).astype(np.uint8)
        for du in (0, 1):
            for dw in (0, 1):
                img[w[keep] + dw, v * VIEW + u[keep] + du] = col[keep]
        img[:, v * VIEW] = 200  # a thin separator between the views
    return img


def _grid(panels: list[np.ndarray], cols: int = 4) -> bytes:
    from PIL import Image

    cols = max(1, min(cols, len(panels)))
    rows = math.ceil(len(panels) / cols)
    h, w, _ = panels[0].shape
    canvas = np.full((rows * (h + 4), cols * (w + 4), 3), 255, dtype=np.uint8)
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        canvas[r * (h + 4): r * (h + 4) + h, c * (w + 4): c * (w + 4) + w] = p
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def _valid_points(samples: torch.Tensor, mask: torch.Tensor | None) -> list[np.ndarray]:
    x = samples.detach().cpu().float().numpy()
    if mask is None:
        return [p for p in x]
    m = mask.detach().cpu().numpy() > 0
    return [p[mi] for p, mi in zip(x, m, strict=True)]


def _extent(clouds: list[np.ndarray]) -> float:
    finite = [np.abs(p[np.isfinite(p).all(1)]) for p in clouds if len(p)]
    top = max((float(f.max()) for f in finite if f.size), default=1.0)
    return max(top, 1e-3) * 1.05


def write_samples(samples: torch.Tensor, out_dir: Path, *, mask: torch.Tensor | None = None,
                  prefix: str = "sample") -> list[Path]:
    """``out_dir/<prefix>s.png`` (the grid, returned first) and ``<prefix>-NNNN.ply`` per cloud."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clouds = [np.nan_to_num(p) for p in _valid_points(samples, mask)]
    extent = _extent(clouds)
    grid = out_dir / f"{prefix}s.png"
    atomic_write_bytes(grid, _grid([render_views(p, np.tile(PLAIN, (len(p), 1)), extent) for p in clouds]))
    paths = [grid]
    for i, p in enumerate(clouds):
        path = out_dir / f"{prefix}-{i:04d}.ply"
        atomic_write_bytes(path, ply_bytes(p))
        paths.append(path)
    return paths


def write_inpainting(samples: torch.Tensor, values: torch.Tensor, known_mask: torch.Tensor,
                     out_dir: Path, *, prefix: str = "inpaint") -> list[Path]:
    """Completions with known points blue and generated ones orange: a PNG grid and PLYs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = samples.detach().cpu().float().numpy()
    known = known_mask.detach().cpu().numpy() > 0
    colors = [np.where(k[:, None], np.array(KNOWN), np.array(GENERATED)).astype(np.uint8) for k in known]
    clouds = [np.nan_to_num(p) for p in x]
    extent = _extent(clouds)
    grid = out_dir / f"{prefix}.png"
    atomic_write_bytes(grid, _grid([render_views(p, c, extent) for p, c in zip(clouds, colors, strict=True)]))
    paths = [grid]
    for i, (p, c) in enumerate(zip(clouds, colors, strict=True)):
        path = out_dir / f"{prefix}-{i:04d}.ply"
        atomic_write_bytes(path, ply_bytes(p, c))
        paths.append(path)
    return paths
