"""Reading meshes and clouds from files: one ``(N, 3)`` float32 array per file, or a one-line
:class:`~polydiff.protocol.DataError` naming the file and the problem.

Mesh formats (PLY with faces, OBJ, OFF, STL) are sampled uniformly by area with ``trimesh``; clouds
(PLY without faces, XYZ/TXT, NPY/NPZ) are read as they are.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from polydiff.protocol import DataError

__all__ = ["MESH_SUFFIXES", "SUFFIXES", "read_cloud", "read_points"]

MESH_SUFFIXES = (".obj", ".off", ".stl")
CLOUD_SUFFIXES = (".xyz", ".txt", ".npy", ".npz")
SUFFIXES = (".ply", *MESH_SUFFIXES, *CLOUD_SUFFIXES)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _check(points: np.ndarray, path: Path, what: str = "points") -> np.ndarray:
    if points.ndim != 2 or points.shape[1] < 3:
        shape = "x".join(str(d) for d in points.shape)
        raise DataError(f"{path}: expected an (N, 3) array of points, got shape {shape}")
    points = points[:, :3].astype(np.float32)
    if points.shape[0] == 0:
        raise DataError(f"{path}: holds no {what}")
    if not np.isfinite(points).all():
        raise DataError(f"{path}: holds NaN or infinite {what}")
    return points


def _load_trimesh(path: Path):
    import trimesh

    try:
        return trimesh.load(str(path), force=None, process=False)
    except DataError:
        raise
    except Exception as exc:  # trimesh raises many kinds for a malformed file
        raise DataError(f"{path}: not a readable {path.suffix[1:].upper()} file ({_one_line(exc)})") from None


def read_points(path: Path, num_points: int, seed: int = 0) -> np.ndarray:
    """The points of ``path``: a mesh sampled by area to ``num_points``, or a cloud as stored."""
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    if suffix in (".xyz", ".txt"):
        return _read_text(path)
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npy array ({_one_line(exc)})") from None
        return _check(_as_float(arr, path), path)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if not keys:
                    raise DataError(f"{path}: holds no arrays")
                arr = z["points"] if "points" in keys else z[keys[0]]
        except DataError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable .npz archive ({_one_line(exc)})") from None
        return _check(_as_float(arr, path), path)
    loaded = _load_trimesh(path)
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.geometry.values() if isinstance(g, trimesh.Trimesh)]
        if not geoms:
            raise DataError(f"{path}: holds no mesh")
        loaded = trimesh.util.concatenate(geoms)
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) > 0:
        vertices = np.asarray(loaded.vertices)
        if vertices.size == 0:
            raise DataError(f"{path}: mesh has no vertices")
        if not np.isfinite(vertices).all():
            raise DataError(f"{path}: holds NaN or infinite vertices")
        if not loaded.area > 0:
            raise DataError(f"{path}: mesh has zero surface area")
        points, _ = trimesh.sample.sample_surface(loaded, num_points, seed=seed)
        return _check(np.asarray(points), path)
    if suffix in MESH_SUFFIXES:
        raise DataError(f"{path}: mesh has no faces")
    vertices = getattr(loaded, "vertices", None)
    if vertices is None:
        raise DataError(f"{path}: holds neither a mesh nor a point cloud")
    return _check(np.asarray(vertices, dtype=np.float64), path, "vertices")


def _read_text(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a text file of points ({_one_line(exc)})") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        try:
            rows.append([float(v) for v in fields[:3]])
        except ValueError:
            raise DataError(f"{path}: line {line_no} is not numbers: {line[:60]!r}") from None
        if len(fields) < 3:
            raise DataError(f"{path}: line {line_no} has {len(fields)} numbers, needs x y z")
    if not rows:
        raise DataError(f"{path}: holds no points")
    return _check(np.asarray(rows, dtype=np.float64), path)


def read_cloud(path: Path, num_points: int, seed: int = 0) -> np.ndarray:
    """:func:`read_points`, a cloud larger than ``num_points`` subsampled to it (fixed by ``seed``)."""
    points = read_points(path, num_points, seed)
    if points.shape[0] > num_points:
        keep = np.random.default_rng(seed).choice(points.shape[0], num_points, replace=False)
        points = points[np.sort(keep)]
    return points


def _as_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """``arr`` as float64, or a one-line error for an array of strings or objects."""
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: holds {arr.dtype} values, not coordinates") from None
