"""What `polydiff sample` generates by default: ``n`` images with labels in the data's proportions.

A class-conditional model is asked for each class in proportion to its share of the training
split, allotted exactly (largest remainders) and shuffled, rather than by drawing ``n`` training
labels at random: with 10 classes, 500 random draws are off the data's balance by a total
variation of about 0.05 on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from polydiff.config import data_source
from polydiff.proportional import proportional_draw
from polydiff.protocol import Batch
from polydiff_images.defaults import DEFAULT_CONFIG


@lru_cache(maxsize=4)
def _train_labels(plugin: Any, data_json: str) -> tuple[tuple[int, int, int], Tensor | None]:
    data = json.loads(data_json)
    source = data_source(data)
    dataset = plugin.build_dataset(source, {"data": data}, "train")
    first = dataset[0]["x"]
    labels = getattr(dataset, "labels", None)
    return tuple(first.shape), None if labels is None else torch.as_tensor(labels).long()


def stratified_layout(
    plugin: Any, config: Mapping[str, Any], n: int, generator: torch.Generator, dataset: Any = None
) -> Batch:
    """Zeros shaped like ``n`` training images and, for labelled data, proportional labels.

    ``dataset`` is the training set when the caller holds it; otherwise it is built (once per
    process and data configuration)."""
    if dataset is not None:
        labels = getattr(dataset, "labels", None)
        # the stored tensor, not dataset[0]: an item of a flipping set would draw from the RNG
        stored = getattr(dataset, "data", None)
        shape = tuple(stored.shape[1:]) if isinstance(stored, Tensor) else tuple(dataset[0]["x"].shape)
        labels = None if labels is None else torch.as_tensor(labels).long()
    else:
        data = dict(DEFAULT_CONFIG["data"])
        data.update(config.get("data") or {})
        shape, labels = _train_labels(plugin, json.dumps(data, sort_keys=True, default=str))
    x = torch.zeros(n, *shape)
    if labels is None or labels.numel() == 0:
        return Batch(x, None, {})
    return Batch(x, None, {"label": proportional_draw(labels, n, generator)})
