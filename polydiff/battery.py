"""The bad-input battery's assertions, for the core's tests and every modality's own.

The promise (docs/reliability.md): bad input ends with exit code 2, one line on stderr naming the
file or option and the problem, no traceback, and nothing already written changed. A plugin's
tests check their loaders the same way:

    from polydiff.battery import assert_refused
    assert_refused(lambda: runner.invoke(app, ["train", "-m", "audio", "--data", str(folder)]),
                   tmp_path, "clip.wav", "not a regular file")
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["assert_one_line_error", "assert_refused", "tree_state"]


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (relative path -> content hash, ``dir``, ``link -> target`` or
    ``special``), so a test can tell that nothing was written, replaced or removed."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                state[rel] = "dir"
            elif path.is_file():
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[rel] = "special"
    return state


def assert_one_line_error(result: Any, *needles: str) -> None:
    """A Click/Typer runner ``result``: exit code 2, no traceback, one stderr line holding every
    needle."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


def assert_refused(invoke: Callable[[], Any], root: Path, *needles: str) -> Any:
    """Run ``invoke`` (a CLI call returning a runner result); assert the one-line error holding
    ``needles`` and that nothing under ``root`` changed. Returns the result."""
    before = tree_state(root)
    result = invoke()
    assert_one_line_error(result, *needles)
    after = tree_state(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"written or changed by a refused command: {changed[:5]}"
    return result
