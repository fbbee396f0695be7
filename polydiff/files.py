"""Walking a user's data folder safely, for every modality's loader.

:func:`walk_files` returns the regular files under a folder whose names a loader accepts, sorted,
and what it had to pass over, each with the reason: a symbolic-link loop or a broken link, a
folder reached twice (a link back up the tree), a FIFO, socket or device under a data file's
name (opening one would block forever), a folder it may not list. Nothing is skipped silently:
loaders report :attr:`Walk.skipped` with :func:`note_skipped`, and ``polydiff train`` names them in
its summary (:func:`skipped_summary`). Loaders that read files use :func:`read_bytes` or their own
decoder on a path from the walk; with ``data.skip_bad`` (``--skip-bad``) a file that fails to
decode is noted the same way instead of stopping the run.

    from polydiff.files import note_skipped, walk_files
    walk = walk_files(root, accept=lambda name: name.lower().endswith(".wav"))
    note_skipped(root, walk.skipped)
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from polydiff.protocol import DataError

__all__ = [
    "Skipped",
    "Walk",
    "clear_skipped",
    "note_skipped",
    "skipped_summary",
    "walk_files",
]


@dataclass(frozen=True)
class Skipped:
    """An entry a walk or a loader passed over, and why (a few words)."""

    path: Path
    reason: str


@dataclass
class Walk:
    """Regular files found (sorted by their path relative to the root) and what was skipped."""

    root: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _stat_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic-link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link"
    return f"cannot read ({exc.strerror or exc})"


def walk_files(
    root: str | Path,
    accept: Callable[[str], bool] | None = None,
    *,
    hidden: bool = False,
    recursive: bool = True,
) -> Walk:
    """The regular files under ``root`` whose names ``accept`` takes (default: all), following
    symbolic links but never into a cycle; hidden names (``.x``) are passed over silently unless
    ``hidden``. Entries whose names ``accept`` refuses are not data and are not reported; data
    names that are not regular files, and folders that cannot be listed or were reached twice,
    are in :attr:`Walk.skipped`. A ``root`` that is missing or not a folder is a
    :class:`~polydiff.protocol.DataError`.
    """
    root = Path(root)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise DataError(f"{root}: no such file or directory") from None
    except OSError as exc:
        raise DataError(f"{root}: {_stat_problem(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{root}: not a folder")
    walk = Walk(root)
    seen = {(st.st_dev, st.st_ino)}
    # a link to a folder above the root is a cycle too (a class folder linking to its data root)
    for above in Path(os.path.realpath(root)).parents:
        try:
            up = os.stat(above)
        except OSError:
            continue
        seen.add((up.st_dev, up.st_ino))
    # folders under links wait until the real tree is walked: a link to a folder that is also
    # reachable directly must not claim it first (the real path is the one to report)
    stack: list[Path] = [root]
    linked: deque[tuple[Path, tuple[int, int]]] = deque()  # in the order they were met

    def first_visit(path: Path, key: tuple[int, int]) -> bool:
        if key in seen:
            walk.skipped.append(Skipped(path, "folder reached twice (a link cycle)"))
            return False
        seen.add(key)
        return True

    while stack or linked:
        if not stack:
            path, key = linked.popleft()
            if first_visit(path, key):
                stack.append(path)
            continue
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if folder == root:
                raise DataError(f"{root}: cannot list the folder ({exc.strerror or exc})") from None
            walk.skipped.append(Skipped(folder, f"cannot list the folder ({exc.strerror or exc})"))
            continue
        subfolders = []
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            path = Path(entry.path)
            wanted = accept is None or accept(entry.name)
            try:
                info = os.stat(path)  # follows links: what a reader would open
            except OSError as exc:
                if wanted or entry.is_symlink():
                    walk.skipped.append(Skipped(path, _stat_problem(exc)))
                continue
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                if not recursive:
                    continue
                key = (info.st_dev, info.st_ino)
                if entry.is_symlink():
                    linked.append((path, key))
                elif first_visit(path, key):
                    subfolders.append(path)
            elif wanted:
                if stat.S_ISREG(mode):
                    walk.files.append(path)
                else:
                    walk.skipped.append(Skipped(path, _kind(mode)))
        stack.extend(reversed(subfolders))
    walk.files.sort(key=lambda p: p.relative_to(root).as_posix())
    return walk


# what loaders passed over in this process, by data root: `polydiff train` names it at the end
_SKIPPED: dict[str, dict[str, str]] = {}


def note_skipped(root: str | Path, skipped: Iterable[Skipped]) -> None:
    """Record what a loader passed over under ``root`` (idempotent: a data set built twice
    counts each entry once)."""
    items = _SKIPPED.setdefault(str(root), {})
    for item in skipped:
        try:
            name = Path(item.path).relative_to(root).as_posix()
        except ValueError:
            name = str(item.path)
        items[name] = item.reason


def skipped_summary(k: int = 3) -> str:
    """``"N entries under ROOT: a (why), b (why) and M more"`` for everything noted (names
    relative to their data root), or ``""``."""
    items = [(p, r) for per_root in _SKIPPED.values() for p, r in per_root.items()]
    roots = [root for root, per_root in _SKIPPED.items() if per_root]
    if not items:
        return ""
    named = ", ".join(f"{p} ({r})" for p, r in items[:k])
    more = f" and {len(items) - k} more" if len(items) > k else ""
    where = f" under {roots[0]}" if len(roots) == 1 else ""
    return f"{len(items)} entr{'y' if len(items) == 1 else 'ies'}{where}: {named}{more}"


def clear_skipped() -> None:
    _SKIPPED.clear()
