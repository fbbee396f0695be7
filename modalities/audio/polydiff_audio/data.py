"""Data sets of clips: the built-in ``notes`` and folders of audio files.

Every item is ``{"x": (1, L), "cond": {"label": k, "mel": (n_mels, F)?}, "mask": (1, L)?}`` at the
configured rate, ``L`` the clip length (or ``data.train_crop`` for the train split). A folder's
files are decoded once, when the data set is built, so that a bad file fails before training starts:
mixed to mono, resampled, loudness-normalised; a file longer than a clip is cropped at random
(train) or from its start (test), a shorter one is zero-padded and masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polydiff.files import Skipped, note_skipped, walk_files
from polydiff.protocol import Batch, DataError
from polydiff_audio.audio_io import (
    AUDIO_SUFFIXES,
    clip_length,
    data_config,
    fit_length,
    load_mono,
    log_mel,
    normalise_loudness,
)
from polydiff_audio.defaults import DEFAULT_CONFIG
from polydiff_audio.notes import notes_split

__all__ = ["AudioDataset", "build_dataset", "data_classes", "folder_files", "sample_layout"]


def _wants_mel(config: Mapping[str, Any]) -> bool:
    model = {**DEFAULT_CONFIG["model"], **((config or {}).get("model") or {})}
    return bool(model.get("mel", False))


class AudioDataset:
    """Clips (whole waveforms, any length) with labels; items cropped or padded on access.

    ``waves``: list of ``(N_i,)`` tensors; ``labels``: ``(n,)`` integers or ``None``; ``masked``:
    whether items carry a mask (folders do, ``notes`` clips always fill the clip).
    """

    def __init__(
        self, waves: list[Tensor], labels: Tensor | None, data: Mapping[str, Any], split: str,
        *, masked: bool, mel: bool,
    ) -> None:
        self.waves = waves
        self.labels = labels
        self.data = dict(data)
        self.split = split
        self.masked = masked
        self.mel = mel
        self.length = clip_length(data)
        crop = int(data.get("train_crop", 0) or 0)
        self.crop = crop if split == "train" and 0 < crop < self.length else 0

    def __len__(self) -> int:
        return len(self.waves)

    def _item(self, x: Tensor, mask: Tensor, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"x": x}
        if self.masked:
            item["mask"] = mask
        cond: dict[str, Any] = {}
        if self.labels is not None:
            cond["label"] = int(self.labels[i])
        if self.mel:
            cond["mel"] = log_mel(x[0], self.data)
        if cond:
            item["cond"] = cond
        return item

    def full_item(self, i: int) -> dict[str, Any]:
        """Item ``i`` at the whole clip length, from the start of its file (no randomness)."""
        x, mask = fit_length(self.waves[i], self.length)
        return self._item(x, mask, i)

    def __getitem__(self, i: int) -> dict[str, Any]:
        wave = self.waves[i]
        if self.split == "train" and len(wave) > self.length:
            start = int(torch.randint(len(wave) - self.length + 1, ()))
            wave = wave[start : start + self.length]
        x, mask = fit_length(wave, self.length)
        if self.crop:
            # a window inside the valid part, on the mel hop grid so the frames line up
            hop = int(self.data["hop_length"])
            valid = int(mask.sum())
            room = max(0, valid - self.crop) // hop
            start = int(torch.randint(room + 1, ())) * hop
            x, mask = x[:, start : start + self.crop], mask[:, start : start + self.crop]
        return self._item(x.contiguous(), mask.contiguous(), i)


@lru_cache(maxsize=4)
def _notes_cached(split: str, size: int, pitches: tuple[float, ...], rate: int, length: int):
    clips, labels = notes_split(split, size, pitches, rate, length)
    return torch.from_numpy(clips), torch.from_numpy(labels)


def _is_audio(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(AUDIO_SUFFIXES)


def folder_files(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Audio files of a folder: flat (no labels), or one subfolder per class (labels by sorted
    name; files deeper inside a class folder belong to it). A single audio file is a data set too.

    Walked with :func:`polydiff.files.walk_files` (links, loops and special files are passed over
    and noted). Raises :class:`DataError` when there is no audio or when files sit both beside and
    inside class folders."""
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    if root.is_file():
        if not root.name.lower().endswith(AUDIO_SUFFIXES):
            raise DataError(f"{root}: not an audio file (expected {', '.join(AUDIO_SUFFIXES)})")
        return [root], None, []
    walk = walk_files(root, _is_audio)
    note_skipped(root, walk.skipped)
    top = [p for p in walk.files if len(p.relative_to(root).parts) == 1]
    nested = [p for p in walk.files if len(p.relative_to(root).parts) > 1]
    classes = sorted({p.relative_to(root).parts[0] for p in nested})
    if top and classes:
        raise DataError(
            f"{root}: audio files both at the top level and in class folders ({', '.join(classes[:3])}); "
            "use one layout"
        )
    if classes:
        index = {name: k for k, name in enumerate(classes)}
        labels = [index[p.relative_to(root).parts[0]] for p in nested]
        order = sorted(range(len(nested)), key=lambda i: (labels[i], str(nested[i])))
        return [nested[i] for i in order], [labels[i] for i in order], classes
    if not top:
        raise DataError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in the folder or its class folders")
    return top, None, []


def _split_files(
    files: list[Path], labels: list[int] | None, fraction: float, seed: int, split: str
) -> tuple[list[Path], list[int] | None]:
    """Hold out ``fraction`` of each class (at least one file of a class with two or more)."""
    groups: dict[int, list[int]] = {}
    for i in range(len(files)):
        groups.setdefault(labels[i] if labels is not None else 0, []).append(i)
    rng = np.random.default_rng(seed)
    test: set[int] = set()
    for idx in groups.values():
        if len(idx) < 2 or fraction <= 0:
            continue
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        test.update(int(j) for j in rng.permutation(idx)[:k])
    keep = [i for i in range(len(files)) if (i in test) == (split == "test")]
    if not keep:  # nothing held out: the test split falls back to the files themselves
        keep = list(range(len(files)))
    return [files[i] for i in keep], None if labels is None else [labels[i] for i in keep]


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=4096)
def _decode(path: str, mtime_ns: int, size: int, rate: int, rms: float) -> Tensor:
    return normalise_loudness(load_mono(Path(path), rate), rms)


def build_dataset(source: str | Path, config: Mapping[str, Any], split: str) -> AudioDataset:
    """The ``split`` of ``notes`` or of a folder (or a single file) of audio."""
    data = data_config(config)
    rate, length = int(data["sample_rate"]), clip_length(data)
    mel = _wants_mel(config)
    if str(source) == "notes" and not data.get("path"):
        size = int(data["train_size"] if split == "train" else data["test_size"])
        clips, labels = _notes_cached(
            split, size, tuple(float(p) for p in data["pitches"]), rate, length
        )
        return AudioDataset(list(clips), labels, data, split, masked=False, mel=mel)
    root = Path(source)
    all_files, all_labels, _ = folder_files(root)
    files, labels = _split_files(all_files, all_labels, float(data["test_fraction"]), int(data["split_seed"]), split)
    rms = float(data["loudness_rms"])
    decoded: dict[Path, Tensor] = {}
    bad: list[Skipped] = []
    # every file of both splits is decoded, so a bad file stops training at once rather than an
    # evaluation later; the cache makes the second split's build free
    for f in all_files:
        try:
            decoded[f] = _decode(str(f), *_stamp(f), rate, rms)
        except DataError as exc:
            if not data.get("skip_bad"):
                raise
            bad.append(Skipped(f, str(exc).removeprefix(f"{f}: ")))
    kept = [k for k, f in enumerate(files) if f in decoded]
    waves = [decoded[files[k]] for k in kept]
    note_skipped(root, bad)
    if not waves:
        raise DataError(f"{root}: no readable audio files in the {split} split")
    lab = None if labels is None else torch.as_tensor([labels[k] for k in kept], dtype=torch.long)
    return AudioDataset(waves, lab, data, split, masked=True, mel=mel)


def data_classes(config: Mapping[str, Any]) -> int:
    """Class count of the run's data from its configuration alone (no decoding)."""
    data = data_config(config)
    if data.get("path"):
        root = Path(data["path"])
        if not root.is_dir():
            return 0
        return len(folder_files(root)[2])
    return len(data["pitches"]) if str(data["dataset"]) == "notes" else 0


def sample_layout(modality: Any, config: Mapping[str, Any], n: int, generator: torch.Generator,
                  dataset: Any = None) -> Batch:
    """``n`` whole clips' shapes (zeros), masks and conditions drawn from the training split.

    The default layout would copy training items, which are ``train_crop`` windows; samples are
    whole clips. Labels are drawn in turn over a random permutation of the classes, so every
    class appears when ``n`` allows."""
    from polydiff.config import data_source

    if not isinstance(dataset, AudioDataset):
        dataset = modality.build_dataset(data_source({**DEFAULT_CONFIG["data"], **(config.get("data") or {})}),
                                         config, "train")
    idx = torch.randint(len(dataset), (n,), generator=generator)
    if dataset.labels is not None and len(dataset) > 0:
        # balanced classes: the k-th sample takes the k-th class of a shuffled cycle
        classes = torch.unique(dataset.labels)
        order = classes[torch.randperm(len(classes), generator=generator)]
        want = order[torch.arange(n) % len(order)]
        for k in range(n):
            pool = torch.nonzero(dataset.labels == want[k]).flatten()
            idx[k] = pool[int(torch.randint(len(pool), (), generator=generator))]
    batch = modality.collate([dataset.full_item(int(i)) for i in idx])
    return Batch(torch.zeros_like(batch.x), batch.mask, batch.cond)
