"""Data sets of point clouds: the built-in ``shapes`` and folders of meshes and clouds.

An item is ``{"x": (n, 3) float32, "mask": (n,) float32 ones, "cond": {"label": class}}``; clouds
from files may have fewer than ``data.num_points`` points, and :func:`collate` pads a batch to its
largest cloud with a ``(B, N)`` mask (and hands the same mask to the network as the ``valid``
condition).

Normalisation (``data.normalize``), recorded in the run's config and stated by every metric:

- ``box``: each shape's bounding box centred at the origin, its longest side scaled to 2;
- ``global``: each shape's centroid removed, then every shape divided by one standard deviation of
  all coordinates of the training split (PointFlow's "global" mode).

With ``data.center`` (the default) each cloud's centre of mass is then moved to the origin, so the
data lie in the zero-mean noise space.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.protocol import Batch, DataError
from polydiff_points.defaults import DEFAULT_CONFIG, VALID

__all__ = ["CloudDataset", "build_dataset", "collate", "data_classes", "normalize_clouds", "resolve_num_classes",
           "scan_folder"]

NORMALIZE = ("box", "global")


class CloudDataset:
    """Clouds (a list of ``(n, 3)`` tensors) with class labels and class names."""

    def __init__(self, clouds: Sequence[torch.Tensor], labels: Sequence[int], classes: Sequence[str],
                 normalize: str, scale: float = 1.0):
        self.clouds = list(clouds)
        self.labels = list(labels)
        self.classes = list(classes)
        self.normalize = normalize
        self.scale = scale  # the global mode's divisor (1 for box)

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.clouds[i]
        return {"x": x, "mask": torch.ones(x.shape[0]), "cond": {"label": int(self.labels[i])}}


def data_classes(config: Mapping[str, Any]) -> int:
    """How many classes the configured data has: ``shapes`` 8, a folder its class subfolders
    (0 when flat: one unnamed class is no condition)."""
    from polydiff.config import data_source

    cfg = data_config(config)
    source = str(data_source(cfg))
    if source == "shapes":
        from polydiff_points.shapes import CLASSES

        return len(CLASSES)
    classes = {c for _, c in scan_folder(Path(source))}
    return 0 if classes <= {""} else len(classes)


def resolve_num_classes(config: Mapping[str, Any]) -> int:
    """``model.num_classes``, -1 resolved to the data's class count.

    A run recorded before the key existed has every other model key and no ``num_classes``: its
    network was unconditional, and is built so again (its checkpoints have no label table)."""
    model = dict(config.get("model") or {})
    if "num_classes" not in model and set(DEFAULT_CONFIG["model"]) - {"num_classes"} <= set(model):
        return 0
    k = int({**DEFAULT_CONFIG["model"], **model}["num_classes"])
    return data_classes(config) if k < 0 else k


def data_config(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(DEFAULT_CONFIG["data"])
    cfg.update(config.get("data") or {})
    if cfg["normalize"] not in NORMALIZE:
        from polydiff.errors import UserError

        raise UserError(f"data.normalize must be one of {', '.join(NORMALIZE)}, got {cfg['normalize']!r}")
    if int(cfg["num_points"]) < 2:
        from polydiff.errors import UserError

        raise UserError(f"data.num_points must be at least 2, got {cfg['num_points']}")
    return cfg


def box_normalize(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    side = float((hi - lo).max())
    return (points - (lo + hi) / 2) / (side / 2 if side > 0 else 1.0)


def normalize_clouds(clouds: list[np.ndarray], mode: str, center: bool, scale: float | None = None
                     ) -> tuple[list[np.ndarray], float]:
    """Normalise ``clouds`` (module docstring); returns them and the global divisor used."""
    if mode == "box":
        out = [box_normalize(p) for p in clouds]
        scale = 1.0
    else:
        out = [p - p.mean(0) for p in clouds]
        if scale is None:
            allc = np.concatenate(out, 0)
            scale = float(allc.std()) or 1.0
        out = [p / scale for p in out]
    if center:
        out = [p - p.mean(0) for p in out]
    return [np.ascontiguousarray(p, dtype=np.float32) for p in out], float(scale)


# ---------------------------------------------------------------------------------- sources


@functools.lru_cache(maxsize=8)
def _shapes_raw(split: str, per_class: int, num_points: int, seed: int):
    from polydiff_points.shapes import CLASSES, make_shape

    clouds, labels = [], []
    for c, kind in enumerate(CLASSES):
        for i in range(per_class):
            clouds.append(make_shape(kind, i, split, num_points, seed))
            labels.append(c)
    return clouds, labels, list(CLASSES)


def scan_folder(root: Path) -> list[tuple[Path, str]]:
    """Every mesh or cloud file under ``root`` with its class (the first subfolder, or "");
    entries the walk passed over (broken links, loops, devices) are noted for the run summary."""
    from polydiff.files import note_skipped, walk_files
    from polydiff_points.readers import SUFFIXES

    root = Path(root)
    if root.is_file():
        return [(root, "")]
    walk = walk_files(root, accept=lambda name: name.lower().endswith(SUFFIXES))
    note_skipped(root, walk.skipped)
    if not walk.files:
        raise DataError(f"{root}: no point-cloud or mesh files (use {', '.join(SUFFIXES)})")
    out = []
    for p in walk.files:
        rel = p.relative_to(root).parts
        out.append((p, rel[0] if len(rel) > 1 else ""))
    return out


@functools.lru_cache(maxsize=4)
def _folder_raw(root: str, split: str, num_points: int, fraction: float, seed: int, skip_bad: bool):
    from polydiff.files import Skipped, note_skipped
    from polydiff_points.readers import read_cloud

    entries = scan_folder(Path(root))
    classes = sorted({c for _, c in entries})
    rng = np.random.default_rng(seed)
    chosen: list[tuple[Path, str]] = []
    for cls in classes:
        members = [e for e in entries if e[1] == cls]
        order = rng.permutation(len(members))
        n_test = 0 if len(members) < 2 or fraction <= 0 else max(1, int(round(fraction * len(members))))
        if len(members) == 1:
            picked = order  # a lone file serves both splits rather than leaving one empty
        else:
            picked = order[:n_test] if split == "test" else order[n_test:]
        chosen += [members[i] for i in sorted(picked)]
    if not chosen:
        raise DataError(f"{root}: the {split} split is empty; raise data.test_fraction")
    clouds, labels, bad = [], [], []
    for i, (path, cls) in enumerate(chosen):
        try:
            clouds.append(read_cloud(path, num_points, seed=i))
        except DataError as exc:
            if not skip_bad:
                raise DataError(f"{exc} (polydiff train --skip-bad skips unreadable files)") from None
            bad.append(Skipped(path, str(exc).removeprefix(f"{path}: ")))
            continue
        labels.append(classes.index(cls))
    note_skipped(root, bad)
    if not clouds:
        raise DataError(f"{root}: no readable cloud in the {split} split ({len(bad)} skipped)")
    return clouds, labels, classes


def _raw(source: str, cfg: Mapping[str, Any], split: str):
    n = int(cfg["num_points"])
    seed = int(cfg["split_seed"])
    if source == "shapes":
        per = int(cfg["train_per_class" if split == "train" else "test_per_class"])
        return _shapes_raw(split, per, n, seed)
    return _folder_raw(str(source), split, n, float(cfg["test_fraction"]), seed,
                       bool(cfg.get("skip_bad", False)))


def build_dataset(source: str | Path, config: Mapping[str, Any], split: str) -> CloudDataset:
    cfg = data_config(config)
    source = str(source)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    clouds, labels, classes = _raw(source, cfg, split)
    scale = None
    if cfg["normalize"] == "global" and split != "train":
        _, scale = normalize_clouds(_raw(source, cfg, "train")[0], "global", False)
    normed, scale = normalize_clouds(list(clouds), cfg["normalize"], bool(cfg["center"]), scale)
    return CloudDataset([torch.from_numpy(p) for p in normed], labels, classes, cfg["normalize"], scale)


def collate(items: Sequence[Mapping[str, Any]]) -> Batch:
    """Pad to the largest cloud; the ``(B, N)`` mask is the state's and the ``valid`` condition."""
    n = max(int(it["x"].shape[0]) for it in items)
    x = torch.zeros(len(items), n, 3)
    mask = torch.zeros(len(items), n)
    for i, it in enumerate(items):
        k = it["x"].shape[0]
        x[i, :k] = it["x"]
        m = it.get("mask")
        mask[i, :k] = 1.0 if m is None else torch.as_tensor(m, dtype=torch.float32)
    x = x * mask[..., None]
    cond = {VALID: mask.clone()}
    labels = [(it.get("cond") or {}).get("label") for it in items]
    if all(lab is not None for lab in labels):
        cond["label"] = torch.as_tensor([int(lab) for lab in labels], dtype=torch.long)
    return Batch(x, mask, cond)
