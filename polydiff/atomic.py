"""Writing files so that a reader never sees half of one: temporary file, flush, fsync, rename.

Every output of polydiff (checkpoints, samples, grids, metrics, plots) goes through these, and
plugins' writers should too: a process killed mid-write leaves either the old file or the new
one under the final name, never a truncated file (at worst a hidden ``.NAME.*.tmp`` beside it,
which :func:`remove_stale_temps` clears).

    from polydiff.atomic import atomic_write, atomic_write_bytes
    atomic_write(out / "clip.wav", lambda tmp: soundfile.write(tmp, audio, rate, format="WAV"))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "FILE_MODE",
    "TEMP_SUFFIX",
    "atomic_link",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "remove_stale_temps",
]

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Write through ``write(tmp_path)`` into a temporary file, fsync, then rename over ``path``.

    ``tmp_path`` is a ``str`` ending in ``.tmp``: writers that pick a format from the suffix need
    it named (``format="WAV"``, ``file_type="ply"``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files; give the usual umask-based mode
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_link(src: Path, dst: Path) -> None:
    """Make ``dst`` another name of ``src`` (a hard link; a copy where links are unsupported)."""
    import shutil

    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(dst.parent)


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files a killed writer left in ``folder``; returns how many."""
    n = 0
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    atomic_write(path, write)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    atomic_write(path, write)
