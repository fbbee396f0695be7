"""polydiff-points: the point-cloud modality for polydiff.

The entry point ``polydiff_points:modality`` is a :class:`PointsModality`. Importing this package
is light (no torch, numpy, trimesh or scipy): the heavy modules load inside the methods.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from polydiff.config_schema import Setting
from polydiff.protocol import Modality
from polydiff_points.defaults import DEFAULT_CONFIG, VALID

__version__ = "0.1.0"
__all__ = ["DEFAULT_CONFIG", "PointsModality", "modality"]


class PointsModality(Modality):
    """Point clouds ``(N, 3)``, padded to ``(B, N, 3)`` with a ``(B, N)`` mask."""

    name: ClassVar[str] = "points"
    protocol_version: ClassVar[str] = "2.0"
    description: ClassVar[str] = (
        "Point clouds (N, 3): built-in procedural 'shapes' (8 classes), folders of meshes and "
        "clouds, a point transformer, PLY + PNG views, PointFlow's MMD/COV/1-NNA/JSD"
    )
    builtin_datasets: ClassVar[tuple[str, ...]] = ("shapes",)
    # the validity mask of a ragged batch, for the network (not a user-facing condition), and
    # the class label (`--class`, guidance)
    conditions: ClassVar[tuple[str, ...]] = (VALID, "label")
    # checked by the core before any run folder is made; the cross-key rules (groups and heads
    # divide width) stay in build_network
    config_schema: ClassVar[dict[str, dict[str, Setting]]] = {
        "data": {
            # 2,048 is the papers' size; beyond 100k a typo would ask for gigabytes per batch
            "num_points": Setting("int", "points per cloud (meshes are sampled to it)", minimum=2, maximum=100_000),
            "normalize": Setting("str", "per-shape bounding box or dataset mean/std", choices=("box", "global")),
            "center": Setting("bool", "zero centre of mass for state and noise"),
            "train_per_class": Setting("int", "shapes: clouds per class in the train split", minimum=1),
            "test_per_class": Setting("int", "shapes: clouds per class in the test split", minimum=1),
            "test_fraction": Setting("float", "folders: share of each class held out", minimum=0.0, maximum=0.9),
            "split_seed": Setting("int", "seed of the train/test split", minimum=0),
        },
        "model": {
            "width": Setting("int", "channels per point", minimum=1, maximum=4096),
            "blocks": Setting("int", "point-transformer blocks", minimum=1, maximum=64),
            "k": Setting("int", "neighbours of each point's attention", minimum=1, maximum=256),
            "groups": Setting("int", "attention weights per group of width/groups channels", minimum=1),
            "knn_chunk": Setting("int", "query rows per k-NN distance chunk", minimum=1),
            "latents": Setting("int", "learned queries of the set attention (0: pooling only)", minimum=0, maximum=1024),
            "heads": Setting("int", "heads of the set attention", minimum=1),
            "num_classes": Setting("int", "-1: the data's classes, 0: unconditional", minimum=-1),
        },
    }

    def default_config(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(DEFAULT_CONFIG)

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str):
        from polydiff_points.data import build_dataset

        return build_dataset(source, config, split)

    def build_network(self, config: Mapping[str, Any]):
        from polydiff_points.data import resolve_num_classes
        from polydiff_points.network import build_network

        return build_network(config, resolve_num_classes(config))

    def collate(self, items: Any):
        from polydiff_points.data import collate

        return collate(items)

    def noise_space(self, config: Mapping[str, Any]):
        from polydiff.noise_space import FULL, ZeroMean

        center = {**DEFAULT_CONFIG["data"], **(config.get("data") or {})}["center"]
        return ZeroMean(axis=1) if center else FULL

    def null_condition(self, name: str, value: Any) -> Any:
        # the mask is structure, not a condition to withhold: dropout and guidance keep it
        if name == VALID:
            return value
        return super().null_condition(name, value)

    def write_samples(self, samples: Any, out_dir: Path, *, mask: Any = None,
                      cond: Mapping[str, Any] | None = None, prefix: str = "sample") -> list[Path]:
        from polydiff_points.writer import write_samples

        return write_samples(samples, out_dir, mask=mask, prefix=prefix)

    def read_state(self, path: Path, config: Mapping[str, Any]):
        from polydiff_points.inputs import read_state

        return read_state(path, config)

    def read_mask(self, spec: str, config: Mapping[str, Any], like: Any):
        from polydiff_points.inputs import read_mask

        return read_mask(spec, config, like)

    def write_inpainting(self, samples: Any, values: Any, known_mask: Any, out_dir: Path, *,
                         prefix: str = "inpaint") -> list[Path]:
        from polydiff_points.writer import write_inpainting

        return write_inpainting(samples, values, known_mask, out_dir, prefix=prefix)

    def metrics(self) -> Mapping[str, Any]:
        from polydiff_points.evaluation import pointflow

        return {"pointflow": pointflow}


modality = PointsModality()
