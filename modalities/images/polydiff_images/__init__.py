"""polydiff-images: the images modality for polydiff.

The entry point ``polydiff_images:modality`` is an :class:`ImagesModality`. Importing this package
stays light (no torch, PIL or scikit-learn): the core imports it just to list plugins, and the
heavy modules (:mod:`polydiff_images.data`, :mod:`polydiff_images.unet`,
:mod:`polydiff_images.writer`) load inside the methods that need them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from polydiff.config_schema import Setting
from polydiff.protocol import Modality
from polydiff_images.defaults import DEFAULT_CONFIG

__version__ = "0.1.0"
__all__ = ["DEFAULT_CONFIG", "ImagesModality", "modality"]


class ImagesModality(Modality):
    """Images as ``(C, H, W)`` tensors in [-1, 1]; built-in ``digits`` and ``shapes``, or folders."""

    name: ClassVar[str] = "images"
    description: ClassVar[str] = (
        "Images (C, H, W) in [-1, 1]: built-in 'digits' (16x16) and 'shapes' (32x32 RGB), "
        "image folders, a small U-Net, PNG grids"
    )
    builtin_datasets: ClassVar[tuple[str, ...]] = ("digits", "shapes")
    conditions: ClassVar[tuple[str, ...]] = ("label",)
    config_schema: ClassVar[dict[str, dict[str, Setting]]] = {
        "data": {
            # beyond 1024 px a typo (100000) would ask the allocator for terabytes
            "resolution": Setting("int", "image side in pixels (0: the source's own)", minimum=0, maximum=1024),
            "channels": Setting("int", "1 gray, 3 RGB (0: the source's own)", choices=(0, 1, 3)),
            "test_size": Setting("int", "digits held out for the test split", minimum=1),
            "test_fraction": Setting("float", "share of each folder class held out", minimum=0.0, maximum=0.9),
        },
        "model": {
            "base_channels": Setting("int", "U-Net width", minimum=1, maximum=1024),
            "num_blocks": Setting("int", "residual blocks per level", minimum=1, maximum=16),
            "num_classes": Setting("int", "-1: the data's classes, 0: unconditional", minimum=-1),
            "dropout": Setting("float", "dropout in residual blocks", minimum=0.0, maximum=1.0, exclusive_maximum=True),
        },
    }

    def default_config(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(DEFAULT_CONFIG)

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str):
        """The ``split`` of a built-in or a folder: :func:`polydiff_images.data.build_dataset`."""
        from polydiff_images.data import build_dataset

        return build_dataset(source, config, split)

    def build_network(self, config: Mapping[str, Any]):
        """The U-Net, its input channels resolved like the data's (auto reads a folder's modes)."""
        from polydiff_images.data import resolve_data_config
        from polydiff_images.unet import build_unet

        data_cfg = config.get("data") or {}
        channels = int(resolve_data_config(data_cfg)["channels"])
        model_cfg = dict(DEFAULT_CONFIG["model"])
        model_cfg.update(config.get("model") or {})
        if int(model_cfg.get("num_classes", 0)) < 0:
            from polydiff_images.data import data_classes

            model_cfg["num_classes"] = data_classes({**DEFAULT_CONFIG["data"], **data_cfg})
        # the memory-format hint belongs to the network (the trainer no longer touches it)
        model_cfg.setdefault("channels_last", (config.get("train") or {}).get("channels_last", "auto"))
        return build_unet(model_cfg, in_channels=channels)

    def write_samples(
        self,
        samples: Any,
        out_dir: Path,
        *,
        mask: Any = None,
        cond: Mapping[str, Any] | None = None,
        prefix: str = "sample",
    ) -> list[Path]:
        from polydiff_images.writer import write_samples

        return write_samples(samples, out_dir, mask=mask, cond=cond, prefix=prefix)

    def sample_layout(self, config: Mapping[str, Any], n: int, generator: Any, dataset: Any = None):
        from polydiff_images.layout import stratified_layout

        return stratified_layout(self, config, n, generator, dataset)

    def read_state(self, path: Path, config: Mapping[str, Any]):
        from polydiff_images.inputs import read_image

        return read_image(path, config)

    def read_mask(self, spec: str, config: Mapping[str, Any], like: Any):
        from polydiff_images.inputs import read_mask

        return read_mask(spec, config, like)

    def write_inpainting(
        self, samples: Any, values: Any, known_mask: Any, out_dir: Path, *, prefix: str = "inpaint"
    ) -> list[Path]:
        from polydiff_images.writer import write_inpainting

        return write_inpainting(samples, values, known_mask, out_dir, prefix=prefix)

    def metrics(self) -> Mapping[str, Any]:
        from polydiff_images.evaluation import metrics_for_modality

        return metrics_for_modality(self)


modality = ImagesModality()
