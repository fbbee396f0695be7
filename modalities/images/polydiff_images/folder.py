"""User image folders: ``polydiff train --modality images --data PATH`` (config ``data.path``).

Layout (the ImageFolder convention):

- **Class folders.** When any top-level subfolder of ``PATH`` holds images, every top-level
  subfolder is a class: sorted names are labels ``0..K-1`` (``dataset.classes``), and images in
  folders nested below a class belong to that class. Items carry ``{"cond": {"label": int}}``.
  Images lying loose in ``PATH`` beside class folders are an error that names them (their class
  would be a guess), and so is a class folder without images.
- **Flat folder.** Otherwise the images anywhere under ``PATH`` are one unlabelled set (no
  ``"cond"``).

Files ending in ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or ``.webp`` (any case) are read, searched
recursively; other files and anything whose name starts with ``.`` are skipped. Each image is
turned upright by its EXIF orientation, converted to ``data.channels`` (1: grayscale by ITU-R 601
luma, 3: RGB), with transparency (RGBA, LA, palette or colour-key transparency) composited onto
**white** first; then the centred square with the shorter side's length is cut out and resized to
``data.resolution`` pixels square with Lanczos filtering (antialiased when shrinking). That is
"shorter side to the resolution, then centre crop" done in one resampling step with an exact,
sub-pixel centre. The images are decoded once and kept in memory as uint8.

Auto size (``0``, the default of both keys; see
:func:`~polydiff_images.data.resolve_data_config`): ``data.resolution`` becomes 32 and
``data.channels`` 1 when every image of the folder (both splits) is *stored* grayscale — PIL modes
``1``, ``L``, ``LA``, ``I``, ``I;16`` and ``F`` (:data:`GRAYSCALE_MODES`) — else 3. Only the file
headers are read for that (:func:`folder_channels`, cached per file list and modification times);
palette images (mode ``P``) and RGB files of gray pixels count as colour. Adding a colour image to
an all-gray folder therefore changes the channels of a run that left ``data.channels`` at 0: set it
to pin them.

Split: ``data.test_fraction`` (default 0.1) of each class goes to ``test`` (rounded per class;
all images count as one class in a flat folder), chosen by a permutation seeded with
``data.split_seed``; the rest is ``train``. ``data.test_fraction = 0`` uses everything for
training (asking for the test split is then an error). ``data.hflip`` mirrors train items at
random (see :class:`~polydiff_images.data.TensorImageDataset`).

Every problem with the data is a :class:`~polydiff.protocol.DataError` whose one-line message
names the file or folder. Folders are walked with :func:`polydiff.files.walk_files`: only regular
files are read, link cycles are cut, and what was passed over (a FIFO named ``x.png``, a broken
link, a folder that cannot be listed) is counted and named in the training summary. With
``data.skip_bad`` (``polydiff train --skip-bad``) an image that cannot be decoded is noted the same
way instead of stopping the run. Every user image, data or ``--inpaint`` input or mask, is opened
by :func:`open_image`, which guards against non-regular files and decompression bombs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.files import Skipped, note_skipped, walk_files
from polydiff.protocol import DataError
from polydiff_images.datasets_common import FOLDER_RESOLUTION, TensorImageDataset, requested_size

__all__ = [
    "BACKGROUND",
    "IMAGE_EXTENSIONS",
    "GRAYSCALE_MODES",
    "FolderIndex",
    "build_folder",
    "folder_channels",
    "folder_size",
    "folder_split_indices",
    "load_image",
    "open_image",
    "scan_folder",
]

#: file name endings read as images (compared in lower case)
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
#: colour that transparent pixels are composited onto (RGB, 0..255)
BACKGROUND = (255, 255, 255)
#: PIL modes of images stored grayscale (alpha or bit depth aside): auto ``data.channels`` is 1
#: when every image of a folder has one of them
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


@dataclass(frozen=True)
class FolderIndex:
    """The images found under ``root``, sorted by relative path, and their labels."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...] | None  # None: a flat, unlabelled folder
    classes: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()  # passed over by the walk (see polydiff.files)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(folder: Path, skipped: list[Skipped], recursive: bool = True) -> list[Path]:
    """Regular image files below ``folder`` (hidden files and folders skipped), sorted; what the
    walk passed over is appended to ``skipped``."""
    walk = walk_files(folder, _is_image, recursive=recursive)
    skipped.extend(walk.skipped)
    return walk.files


def _examples(paths: Sequence[Path], root: Path, k: int = 3) -> str:
    names = [p.relative_to(root).as_posix() for p in paths[:k]]
    more = f" and {len(paths) - k} more" if len(paths) > k else ""
    return ", ".join(names) + more


def scan_folder(root: str | Path) -> FolderIndex:
    """Find the images of a folder and their classes; :class:`DataError` for a bad layout."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (give a folder of images, optionally in class folders)")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"{root}: cannot list the folder ({exc.strerror or exc})") from None
    visible = [e for e in entries if not e.name.startswith(".")]
    if not visible:
        raise DataError(f"{root}: the folder is empty")
    skipped: list[Skipped] = []
    subdirs = [Path(e.path) for e in visible if _is_dir(e)]
    loose = _images_under(root, skipped, recursive=False)
    per_class = {d.name: _images_under(d, skipped) for d in subdirs}
    note_skipped(root, skipped)

    if any(per_class.values()):
        if loose:
            raise DataError(
                f"{root}: {len(loose)} image(s) lie beside the class folders "
                f"({_examples(loose, root)}); move them into a class folder (or remove the "
                "subfolders for an unlabelled set)"
            )
        for name, files in per_class.items():
            if not files:
                raise DataError(
                    f"{root / name}: class folder holds no supported images "
                    f"({', '.join(IMAGE_EXTENSIONS)})"
                )
        classes = tuple(sorted(per_class))
        files, labels = [], []
        for label, name in enumerate(classes):
            files.extend(per_class[name])
            labels.extend([label] * len(per_class[name]))
        return FolderIndex(root, tuple(files), tuple(labels), classes, tuple(skipped))

    skipped = []
    files = _images_under(root, skipped)
    note_skipped(root, skipped)
    if not files:
        raise DataError(
            f"{root}: no supported images found (looked for {', '.join(IMAGE_EXTENSIONS)}, "
            "recursively)"
        )
    return FolderIndex(root, tuple(files), None, (), tuple(skipped))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; False for a loop or a broken link
    except OSError:
        return False


def folder_channels(index: FolderIndex, *, skip_bad: bool = False) -> int:
    """1 when every image of the folder is stored grayscale (:data:`GRAYSCALE_MODES`), else 3.

    Reads only the file headers (PIL opens lazily), stops at the first colour image, and caches
    the answer per file list and the files' sizes and modification times, so the train split, the
    test split and the network (all resolving ``data.channels = 0``) read them once.
    """
    stamps = []
    for path in index.files:
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
        stamps.append((str(path), st.st_mtime_ns, st.st_size))
    return _channels_of(tuple(stamps), skip_bad)


def folder_size(
    data_config: Mapping[str, Any], root: str | Path, *, index: FolderIndex | None = None
) -> dict[str, Any]:
    """:func:`~polydiff_images.datasets_common.requested_size` with auto values resolved for the
    folder ``root``: :data:`~polydiff_images.datasets_common.FOLDER_RESOLUTION` pixels and
    :func:`folder_channels` (``index`` is the folder's scan when the caller has made it)."""
    data = requested_size(data_config)
    data["resolution"] = data["resolution"] or FOLDER_RESOLUTION
    if not data["channels"]:
        data["channels"] = folder_channels(
            index if index is not None else scan_folder(root),
            skip_bad=bool(data_config.get("skip_bad", False)),
        )
    return data


@functools.lru_cache(maxsize=16)
def _channels_of(stamps: tuple[tuple[str, int, int], ...], skip_bad: bool = False) -> int:
    for name, _, _ in stamps:
        try:
            mode = open_image(name, header_only=True).mode  # no pixels are decoded
        except DataError as exc:
            if skip_bad:
                continue  # build_folder notes it when it fails to decode the pixels
            raise DataError(f"{exc}{SKIP_HINT}") from None
        if mode not in GRAYSCALE_MODES:
            return 3
    return 1


#: the hint a data error about one file carries
SKIP_HINT = "; polydiff train --skip-bad skips such files"


def open_image(path: str | Path, *, header_only: bool = False) -> Any:
    """The one guarded reader of user images: a PIL image (decoded, turned upright by its EXIF
    orientation; with ``header_only`` only its header read) or a one-line
    :class:`~polydiff.protocol.DataError` for a missing or non-regular file (a FIFO would block
    forever), a decompression bomb, or a file PIL cannot read."""
    import stat

    from PIL import Image, ImageOps

    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file, not read")
    try:
        with Image.open(path) as im:
            if header_only:
                return im
            im.load()
            return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to read ({_one_line(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot read the image ({_one_line(exc)})") from None


def load_image(path: str | Path, resolution: int, channels: int) -> np.ndarray:
    """One image file as ``(channels, resolution, resolution)`` uint8 (see the module docstring)."""
    from PIL import Image

    path = Path(path)
    im = open_image(path)
    try:
        im = _to_mode(im, "L" if channels == 1 else "RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        im = im.resize(
            (resolution, resolution),
            Image.Resampling.LANCZOS,
            box=(left, top, left + side, top + side),
        )
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot convert the image ({_one_line(exc)})") from None
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _to_mode(im: Any, mode: str) -> Any:
    """Convert to ``"L"`` or ``"RGB"``, compositing any transparency onto :data:`BACKGROUND`."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG): scale to 8 bits instead of clipping at 255
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        im = Image.alpha_composite(base, rgba).convert("RGB")
    if im.mode != mode:
        im = im.convert(mode)
    return im


def folder_split_indices(
    labels: Sequence[int] | None, n: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` indices: ``round(test_fraction * size)`` of each class to test."""
    groups = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        k = int(np.floor(test_fraction * len(members) + 0.5))
        k = min(k, len(members) - 1)  # every class keeps a training image
        test.append(members[rng.permutation(len(members))[:k]])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    return train_idx, test_idx


def build_folder(root: str | Path, data_config: Mapping[str, Any], split: str) -> TensorImageDataset:
    """The ``split`` (``"train"`` or ``"test"``) of an image folder, deterministic.

    Sized by :func:`folder_size` (auto: 32 px, channels from the files' modes, see the module
    docstring).
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; available: train, test")
    test_fraction = float(data_config.get("test_fraction", 0.1))
    seed = int(data_config.get("split_seed", 0))
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"data.test_fraction = {test_fraction}: must lie in [0, 1)")

    index = scan_folder(root)
    data = folder_size(data_config, root, index=index)
    resolution, channels = int(data["resolution"]), int(data["channels"])
    train_idx, test_idx = folder_split_indices(index.labels, len(index.files), test_fraction, seed)
    idx = train_idx if split == "train" else test_idx
    if len(idx) == 0:
        raise DataError(
            f"{index.root}: the test split is empty ({len(index.files)} images, "
            f"data.test_fraction = {test_fraction} rounds to 0 per class); raise data.test_fraction"
        )
    skip_bad = bool(data_config.get("skip_bad", False))
    kept, arrays, bad = [], [], []
    for i in idx:
        try:
            arrays.append(load_image(index.files[i], resolution, channels))
            kept.append(i)
        except DataError as exc:
            if not skip_bad:
                raise DataError(f"{exc}{SKIP_HINT}") from None
            bad.append(Skipped(index.files[i], str(exc).removeprefix(f"{index.files[i]}: ")))
    note_skipped(index.root, bad)
    if not arrays:
        raise DataError(f"{index.root}: no readable image in the {split} split ({len(bad)} skipped)")
    idx = np.asarray(kept, dtype=np.int64)
    images = np.stack(arrays)
    labels = None if index.labels is None else torch.tensor([index.labels[i] for i in idx])
    dataset = TensorImageDataset(
        torch.from_numpy(images),
        labels,
        hflip=bool(data_config.get("hflip", False)) and split == "train",
        classes=index.classes if index.labels is not None else None,
    )
    dataset.files = tuple(index.files[i] for i in idx)  # type: ignore[attr-defined]
    return dataset
