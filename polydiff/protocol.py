"""The Modality contract between the core and its plugins.

A plugin registers one object under the entry-point group ``polydiff.modalities``. Importing the
module that defines it must stay light: no torch, torchaudio or torch_geometric at import time —
the core imports the object to list it, and heavy imports belong inside the methods.

The core calls, in order: :meth:`Modality.default_config` (merged with the core's defaults and the
user's TOML), :meth:`Modality.build_dataset`, :meth:`Modality.collate` on lists of items,
:meth:`Modality.build_network`, :meth:`Modality.shape_noise` on every noise draw (training and
sampling), and :meth:`Modality.write_samples` on the samples.

Dataset items are mappings ``{"x": state, "mask": mask or absent, "cond": {name: value} or absent}``
without the batch dimension; :meth:`Modality.collate` turns a list of them into a :class:`Batch`.
A state is a tensor or a mapping of named tensors (see :mod:`polydiff.state`); a network maps
``(x_in, c_noise, **cond)`` to a tensor or mapping of the same structure as ``x_in``.

Version history: 1 — first contract (this file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps this module free of torch
    from torch import nn
    from torch.utils.data import Dataset

    from polydiff.state import Mask, State

PROTOCOL_VERSION = 1

#: members a plugin object must provide; the registry marks a plugin broken when one is missing.
REQUIRED_MEMBERS: tuple[str, ...] = (
    "name",
    "protocol_version",
    "description",
    "default_config",
    "build_dataset",
    "build_network",
    "write_samples",
)


class DataError(ValueError):
    """Bad user data. The message names the file and the problem in one line."""


@dataclass
class Batch:
    """A collated batch: the state, its mask (``None`` when nothing is padded) and conditions."""

    x: State
    mask: Mask = None
    cond: dict[str, Any] = field(default_factory=dict)

    def to(self, device: Any) -> Batch:
        from polydiff.state import tree_map

        def move(v: Any) -> Any:
            if hasattr(v, "to"):
                return v.to(device, non_blocking=True)
            return v

        x = tree_map(move, self.x)
        mask = None if self.mask is None else tree_map(move, self.mask)
        return Batch(x, mask, {k: move(v) for k, v in self.cond.items()})


class Modality:
    """Base class with the optional members filled in; plugins subclass it or duck-type it.

    Subclasses set :attr:`name` and :attr:`description` and implement the abstract members.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    protocol_version: ClassVar[int] = PROTOCOL_VERSION
    #: names accepted by ``build_dataset`` without a path (generated or shipped, never downloaded)
    builtin_datasets: ClassVar[Sequence[str]] = ()
    #: condition names the network accepts (e.g. ``("label",)``); the core drops the rest
    conditions: ClassVar[Sequence[str]] = ()

    def default_config(self) -> dict[str, dict[str, Any]]:
        """Sections ``data``, ``model``, and optionally ``train``, ``sde``, ``loss``, ``sample``."""
        raise NotImplementedError

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str) -> Dataset:
        """``source`` is a built-in name or a user path; ``split`` is ``"train"`` or ``"test"``.

        Raises :class:`DataError` for unreadable or malformed user files.
        """
        raise NotImplementedError

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        """Stack fixed-size items; ragged modalities override this to pad and build a mask."""
        import torch
        from torch.utils.data import default_collate

        xs = default_collate([it["x"] for it in items])
        masks = [it.get("mask") for it in items]
        mask = None if masks[0] is None else default_collate(masks)
        conds = [it.get("cond") or {} for it in items]
        cond = {k: torch.as_tensor(default_collate([c[k] for c in conds])) for k in conds[0]}
        return Batch(xs, mask, cond)

    def build_network(self, config: Mapping[str, Any]) -> nn.Module:
        """A network ``net(x_in, c_noise, **cond)`` returning the structure of ``x_in``."""
        raise NotImplementedError

    def shape_noise(self, noise: State, mask: Mask) -> State:
        """Project raw standard-normal noise onto the modality's noise space (default: as is)."""
        return noise

    def write_samples(
        self,
        samples: State,
        out_dir: Path,
        *,
        mask: Mask = None,
        cond: Mapping[str, Any] | None = None,
        prefix: str = "sample",
    ) -> list[Path]:
        """Write samples in the field's formats; returns the written paths (a summary file first)."""
        raise NotImplementedError

    # Optional: ``sample_layout(config, n, generator) -> Batch`` giving the shapes (zeros), mask
    # and conditions of ``n`` samples. Without it the core draws ``n`` training items for them.
    # A ``dataset=None`` keyword receives the training set when the caller (the trainer) holds it.
    #
    # Optional: ``null_condition(name, value) -> tensor``, the "no condition" value of a
    # condition (classifier-free guidance, ``train.cond_dropout``); default -1 for integer
    # conditions and 0 for floating ones (see :mod:`polydiff.conditions`).
    #
    # Optional, for ``polydiff sample --inpaint FILE --mask SPEC``:
    # ``read_state(path, config) -> State`` reads one item (no batch dimension) from a user file,
    # preprocessed like the training data, raising :class:`DataError` for bad files;
    # ``read_mask(spec, config, like) -> Mask`` turns a mask file or a named preset into a mask
    # for the item ``like`` (1 = known, 0 = to generate); and
    # ``write_inpainting(samples, values, known_mask, out_dir, prefix=...) -> list[Path]`` writes
    # the input, the mask and the results side by side (else ``write_samples`` is used).

    def metrics(self) -> Mapping[str, Any]:
        """Named metric callables for ``polydiff evaluate`` (none by default)."""
        return {}


def missing_members(obj: object) -> list[str]:
    """Required members that ``obj`` lacks or leaves unimplemented."""
    missing = []
    for member in REQUIRED_MEMBERS:
        value = getattr(obj, member, None)
        if value is None or value == "":
            missing.append(member)
            continue
        func = getattr(type(obj), member, None)
        if callable(func) and getattr(Modality, member, None) is func:
            missing.append(member)
    return missing
