"""Checkpoints that survive crashes: every file is written to a temporary name and renamed.

A checkpoint is a folder entry pair: ``<stem>.safetensors`` (model and EMA weights, plus metadata:
step, versions) and ``<stem>.state.pt`` (optimizer, RNG and data-order state, loaded with
``weights_only=True``). The weights file is written last and is the commit point: a state file
without weights is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)`` into a temporary file, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    _atomic_write(path, write)


def _flatten(prefix: str, sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_checkpoint(
    run_dir: Path,
    stem: str,
    *,
    model: Mapping[str, torch.Tensor],
    ema: Mapping[str, torch.Tensor] | None,
    state: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``<stem>.state.pt`` then ``<stem>.safetensors`` atomically; returns the weights path."""
    weights_path = run_dir / f"{stem}{WEIGHTS_SUFFIX}"
    if state is not None:
        _atomic_write(run_dir / f"{stem}{STATE_SUFFIX}", lambda tmp: torch.save(dict(state), tmp))
    tensors = _flatten("model", model)
    if ema is not None:
        tensors.update(_flatten("ema", ema))
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    _atomic_write(weights_path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return weights_path


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(model state dict, EMA state dict (may be empty), metadata) from a weights file."""
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata() or {}
    meta = {k: json.loads(v) for k, v in raw.items()}
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
    return model, ema, meta


def load_state(run_dir: Path, stem: str) -> dict[str, Any] | None:
    path = run_dir / f"{stem}{STATE_SUFFIX}"
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
