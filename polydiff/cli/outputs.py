"""Where the commands write, checked before any work: a usable folder, and a policy that never
mixes earlier outputs with new ones.

* :func:`check_writable_folder` refuses, in one line, an ``--out`` that exists as a file, lies under
  a file, or sits in a folder this process cannot write — before training or sampling starts,
  not after.
* :func:`claim_output_folder` applies the policy of `polydiff sample`: the default folder gets a
  fresh numbered name (``heun-18``, ``heun-18-2``, ...) when taken; an explicit ``--out`` that
  already holds files is refused with a hint, and ``--overwrite`` empties it first.
* :func:`fresh_file` does the same for single files (`polydiff evaluate`'s JSON report).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from polydiff.errors import UserError

__all__ = ["check_writable_folder", "claim_output_folder", "fresh_file", "holds_files"]

#: a folder holding these is a training run: ``--overwrite`` never empties it
RUN_MARKERS = ("config.json", "checkpoints")


def check_writable_folder(path: Path, option: str) -> None:
    """Raise a one-line :class:`UserError` unless ``path`` is a folder, or can be made one, that
    this process may write in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise UserError(f"{option} {path}: {probe} is a broken symbolic link")
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {probe} (permission denied)")


def holds_files(folder: Path) -> list[str]:
    """The names of the entries of ``folder`` (sorted; empty when it is missing or empty)."""
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise UserError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None


def _names(entries: list[str], k: int = 3) -> str:
    more = f" and {len(entries) - k} more" if len(entries) > k else ""
    return ", ".join(entries[:k]) + more


def claim_output_folder(
    explicit: Path | None, default: Path, *, overwrite: bool = False, option: str = "--out"
) -> tuple[Path, str | None]:
    """(the folder to write into, a note for the summary or ``None``), checked before any work.

    ``explicit`` (the user's ``--out``) holding files is refused unless ``overwrite``, which
    empties it — never a training run's folder. Without ``explicit``, ``default`` is used, or
    the first of ``default-2``, ``default-3`` ... that is free (``overwrite``: ``default``,
    emptied).
    """
    if explicit is not None:
        folder = Path(explicit)
        check_writable_folder(folder, option)
        entries = holds_files(folder)
        if entries and not overwrite:
            raise UserError(
                f"{option} {folder}: already holds {len(entries)} entries ({_names(entries)}); "
                "choose another folder or add --overwrite to replace them"
            )
        if entries:
            _empty(folder, option)
        return folder, None
    folder = Path(default)
    check_writable_folder(folder, option)
    if overwrite:
        if holds_files(folder):
            _empty(folder, option)
        return folder, None
    n = 1
    while holds_files(folder):
        n += 1
        folder = default.with_name(f"{default.name}-{n}")
    note = None if n == 1 else f"{default} already held samples"
    return folder, note


def _empty(folder: Path, option: str) -> None:
    if any((folder / m).exists() for m in RUN_MARKERS):
        raise UserError(
            f"{option} {folder}: is a training run's folder; --overwrite never empties one"
        )
    for name in holds_files(folder):
        entry = folder / name
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            raise UserError(f"{option} {folder}: cannot remove {name} ({exc.strerror or exc})") from None


def fresh_file(path: Path, *, overwrite: bool = False) -> Path:
    """``path``, or when it exists (and not ``overwrite``), the first free ``stem-2.suffix``,
    ``stem-3.suffix`` ... beside it."""
    if overwrite or not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1
