"""The default reading of ``--cond NAME=SPEC`` (see
:meth:`polydiff.protocol.Modality.read_condition`): a leaf module, so the contract's default can
use it without importing the rest of the core."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from polydiff.errors import UserError

__all__ = ["parse_condition"]

_ARRAY_SUFFIXES = (".npy", ".txt", ".csv")


def parse_condition(
    name: str, spec: str, n: int, null: Callable[[Tensor], Tensor]
) -> Tensor:
    """The default reading of ``--cond NAME=SPEC`` for ``n`` samples (see
    :meth:`polydiff.protocol.Modality.read_condition`); ``null`` maps a value to its null value."""
    text = spec.strip()
    where = f"--cond {name}={spec}"
    if text.lower() == "none":
        return null(torch.zeros(n, dtype=torch.long))
    path = Path(text)
    if path.suffix.lower() in _ARRAY_SUFFIXES or path.is_file():
        return _broadcast(_read_array(path, where), n, where)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UserError(f"{where}: empty value")
    try:
        ints = [int(p) for p in parts]
    except ValueError:
        ints = None
    if ints is not None:
        return torch.tensor([ints[i % len(ints)] for i in range(n)], dtype=torch.long)
    try:
        floats = [float(p) for p in parts]
    except ValueError:
        raise UserError(
            f"{where}: expected 'none', numbers separated by commas or a .npy/.txt/.csv file"
        ) from None
    if not all(torch.isfinite(torch.tensor(floats))):
        raise UserError(f"{where}: values must be finite")
    if len(floats) == 1:
        return torch.full((n,), floats[0], dtype=torch.float32)
    return torch.tensor(floats, dtype=torch.float32).expand(n, len(floats)).clone()


def _read_array(path: Path, where: str) -> Tensor:
    import numpy as np

    if not path.is_file():
        raise UserError(f"{path}: file not found ({where})")
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=1)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: not an array of numbers ({first})") from None
    if arr.dtype.kind not in "biuf":
        raise UserError(f"{path}: holds {arr.dtype}, not numbers")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t.to(torch.float32) if t.dtype.is_floating_point else t.to(torch.long)
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise UserError(f"{path}: holds NaN or infinite values")
    return t


def _broadcast(t: Tensor, n: int, where: str) -> Tensor:
    """One value for every sample (a vector, or a single row), or exactly ``n`` rows."""
    if t.ndim >= 2 and t.shape[0] == n:
        return t
    if t.ndim >= 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim >= 2:
        raise UserError(f"{where}: {t.shape[0]} rows for {n} samples (give 1 row or {n})")
    return t.unsqueeze(0).expand(n, *t.shape).clone()
