"""The built-in ``shapes`` data set: procedural meshes with random proportions, sampled by area.

Eight families (:data:`CLASSES`): six primitives and two part-assembled objects built from boxes and
cylinders (a table: a top on four legs; a chair: a seat, four legs and a back). Every shape gets
random proportions and a random rotation about the vertical (z) axis, then ``trimesh`` samples its
surface uniformly by area. Each cloud is a pure function of (split, class, index, seed), so the
train/test split is fixed and nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import trimesh

__all__ = ["CLASSES", "make_mesh", "make_shape"]

CLASSES: tuple[str, ...] = ("sphere", "torus", "box", "cylinder", "cone", "capsule", "table", "chair")
#: added to the seed of the test split so its shapes never repeat the train split's
_SPLIT_OFFSET = {"train": 0, "test": 1_000_003}


def _box(extents, centre) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))


def _leg(radius: float, height: float, x: float, y: float) -> trimesh.Trimesh:
    leg = trimesh.creation.cylinder(radius=radius, height=height, sections=12)
    leg.apply_translation([x, y, height / 2])
    return leg


def make_mesh(kind: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """One random mesh of family ``kind`` (upright along z, before rotation)."""
    u = rng.uniform
    if kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3)
        mesh.apply_scale(u(0.75, 1.0, size=3))  # a mildly squashed ellipsoid
    elif kind == "torus":
        mesh = trimesh.creation.torus(1.0, u(0.2, 0.45), major_sections=32, minor_sections=16)
    elif kind == "box":
        mesh = trimesh.creation.box(extents=u(0.35, 1.0, size=3))
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=u(0.25, 0.6), height=u(0.8, 2.0), sections=32)
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=u(0.35, 0.7), height=u(0.7, 1.6), sections=32)
    elif kind == "capsule":
        mesh = trimesh.creation.capsule(height=u(0.5, 1.5), radius=u(0.2, 0.45), count=[16, 16])
    elif kind == "table":
        w, d, h, t = u(0.9, 1.6), u(0.5, 1.0), u(0.5, 0.9), u(0.05, 0.1)
        r = u(0.03, 0.06)
        parts = [_box([w, d, t], [0, 0, h + t / 2])]
        parts += [_leg(r, h, sx * (w / 2 - 2 * r), sy * (d / 2 - 2 * r)) for sx in (-1, 1) for sy in (-1, 1)]
        mesh = trimesh.util.concatenate(parts)
    elif kind == "chair":
        w, d, h, t = u(0.5, 0.8), u(0.5, 0.8), u(0.4, 0.6), u(0.05, 0.09)
        back, r = u(0.5, 0.9), u(0.025, 0.045)
        parts = [_box([w, d, t], [0, 0, h + t / 2]), _box([w, t, back], [0, d / 2 - t / 2, h + t + back / 2])]
        parts += [_leg(r, h, sx * (w / 2 - 2 * r), sy * (d / 2 - 2 * r)) for sx in (-1, 1) for sy in (-1, 1)]
        mesh = trimesh.util.concatenate(parts)
    else:
        raise ValueError(f"unknown shape family {kind!r}; known: {', '.join(CLASSES)}")
    angle = u(0.0, 2 * np.pi)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(angle, [0, 0, 1]))
    return mesh


def make_shape(kind: str, index: int, split: str, num_points: int, seed: int = 0) -> np.ndarray:
    """Cloud ``index`` of family ``kind`` in ``split``: ``(num_points, 3)`` float32, unnormalised."""
    rng = np.random.default_rng([seed, CLASSES.index(kind), index + _SPLIT_OFFSET[split]])
    mesh = make_mesh(kind, rng)
    points, _ = trimesh.sample.sample_surface(mesh, num_points, seed=rng)
    return np.asarray(points, dtype=np.float32)
