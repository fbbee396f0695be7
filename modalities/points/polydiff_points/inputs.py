"""Inputs for shape completion (``polydiff sample RUN --inpaint FILE --mask SPEC``).

``read_state`` reads a mesh or cloud file. A cloud of ``data.num_points`` points or more (or any
mesh) is normalised like the training data and the mask SPEC picks the known points:

- a half-space preset ``AXIS>T`` or ``AXIS<T`` (``x>0``, ``z<-0.2``): points on that side are kept;
- a ``.npy`` / ``.txt`` file of ``num_points`` zeros and ones (1 = known).

A *partial* cloud (fewer points than ``data.num_points``) is taken as it is, in the model's
coordinates (no normalisation: the centre and size of the whole shape are unknown); the missing
points are added as placeholders at the origin, and the preset ``given`` marks the file's points
as known and the placeholders as the points to generate.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.protocol import DataError
from polydiff_points.data import data_config, normalize_clouds

__all__ = ["read_mask", "read_state"]

_HALF_SPACE = re.compile(r"^\s*([xyz])\s*([<>])\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*$")
# how many leading points of a state read_state took from a partial file (for the `given` preset)
# (keyed by id, with a weak reference to tell a recycled id apart: tensors cannot be dict keys)
_GIVEN: dict[int, tuple[weakref.ref, int]] = {}


def _given_count(like: torch.Tensor) -> int | None:
    entry = _GIVEN.get(id(like))
    return entry[1] if entry is not None and entry[0]() is like else None


def read_state(path: Path, config: Mapping[str, Any]) -> torch.Tensor:
    from polydiff_points.readers import read_cloud

    cfg = data_config(config)
    n = int(cfg["num_points"])
    points = read_cloud(Path(path), n)
    if points.shape[0] < n:
        state = torch.zeros(n, 3)
        state[: points.shape[0]] = torch.from_numpy(points)
        _GIVEN[id(state)] = (weakref.ref(state), points.shape[0])
        return state
    if cfg["normalize"] == "global":
        from polydiff.config import data_source
        from polydiff_points.data import build_dataset

        scale = build_dataset(data_source(config["data"]), config, "train").scale
        normed, _ = normalize_clouds([points], "global", bool(cfg["center"]), scale)
    else:
        normed, _ = normalize_clouds([points], "box", bool(cfg["center"]))
    return torch.from_numpy(normed[0])


def read_mask(spec: str, config: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor:
    if spec.strip() == "given":
        count = _given_count(like)
        if count is None:
            raise DataError("--mask given: the input is a whole cloud; give a half-space such as x>0")
        known = torch.zeros(like.shape[0])
        known[:count] = 1.0
        return known
    m = _HALF_SPACE.match(spec)
    if m:
        axis, op, t = "xyz".index(m.group(1)), m.group(2), float(m.group(3))
        known = like[:, axis] > t if op == ">" else like[:, axis] < t
        if not bool(known.any()) or bool(known.all()):
            raise DataError(f"--mask {spec}: keeps {int(known.sum())} of {like.shape[0]} points; "
                            "choose a plane that cuts the cloud")
        return known.float()
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"--mask {spec}: neither a file nor a preset (x>0, z<-0.2, given)")
    try:
        arr = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path)
        arr = np.asarray(arr, dtype=np.float64).reshape(-1)  # strings fail here, not below
    except Exception as exc:
        raise DataError(f"{path}: not a mask of zeros and ones ({' '.join(str(exc).split())[:120]})") from None
    if arr.shape[0] != like.shape[0]:
        raise DataError(f"{path}: {arr.shape[0]} mask values for a cloud of {like.shape[0]} points")
    return torch.from_numpy((arr > 0).astype(np.float32))
