"""Checkpoints that survive crashes: every file is written to a temporary name and renamed.

A checkpoint is a folder entry pair: ``<stem>.safetensors`` (model and EMA weights, plus metadata:
step, config, versions) and ``<stem>.state.pt`` (optimizer, RNG and data-order state, loaded with
``weights_only=True``). The state file is written first, the weights second; the training engine
then names the pair in ``latest.json`` (itself replaced atomically), which is the commit point. A
process killed at any moment leaves at worst a ``.*.tmp`` file (removed by
:func:`remove_stale_temps`) and the previous checkpoint intact.

Weights hold ``model.*`` and ``ema.*`` (the EMA used for sampling) and, when several EMA decay rates
are tracked, ``ema1.*``, ``ema2.*`` ... (decays in the ``ema_decays`` metadata entry).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from polydiff.atomic import (  # noqa: F401  (re-exported: older callers import them from here)
    FILE_MODE,
    TEMP_SUFFIX,
    atomic_link,
    atomic_write,
    fsync_dir,
    remove_stale_temps,
)
from polydiff.errors import UserError

WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


# the atomic writers moved to polydiff.atomic (plugins use them too); old names kept for callers
_atomic_write = atomic_write
_fsync_dir = fsync_dir


def atomic_write_text(path: Path, text: str) -> None:
    # through this module's _atomic_write, which the kill tests slow down to kill inside a write
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


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
    extra: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``<stem>.state.pt`` then ``<stem>.safetensors`` atomically; returns the weights path.

    ``extra`` maps further prefixes (``ema1`` ...) to state dicts stored beside model and EMA.
    """
    weights_path = run_dir / f"{stem}{WEIGHTS_SUFFIX}"
    if state is not None:
        _atomic_write(run_dir / f"{stem}{STATE_SUFFIX}", lambda tmp: torch.save(dict(state), tmp))
    tensors = _flatten("model", model)
    if ema is not None:
        tensors.update(_flatten("ema", ema))
    for prefix, sd in (extra or {}).items():
        tensors.update(_flatten(prefix, sd))
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    _atomic_write(weights_path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return weights_path


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def load_all_weights(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """({prefix: state dict} for every prefix (``model``, ``ema``, ``ema1`` ...), metadata).

    A truncated, corrupt or foreign file is a one-line :class:`UserError` naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except FileNotFoundError:
        raise UserError(f"{path}: checkpoint file missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: damaged or not a safetensors file ({_first_line(exc)})") from None
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path}: damaged checkpoint metadata ({_first_line(exc)})") from None
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        groups.setdefault(prefix, {})[name] = value
    return groups, meta


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(model state dict, EMA state dict (may be empty), metadata) from a weights file."""
    groups, meta = load_all_weights(path)
    return groups.get("model", {}), groups.get("ema", {}), meta


def _major(version: str) -> str:
    return str(version).split(".")[0].strip()


def check_compatible(
    meta: Mapping[str, Any],
    path: Path,
    *,
    protocol_version: int | str,
    distribution: str | None,
    version: str | None,
) -> None:
    """Raise a one-line :class:`UserError` when the checkpoint at ``path`` (metadata ``meta``) was
    written by a plugin of another contract version or another major version than the one installed.

    Checkpoints written before these fields existed (or by in-memory plugins without a version) pass.
    """
    from polydiff.protocol import SUPPORTED_MAJORS, parse_version

    saved_protocol = meta.get("protocol_version")
    # the contract shapes calls, not weights: any contract this polydiff loads can read the run
    try:
        saved_major = None if saved_protocol is None else parse_version(saved_protocol)[0]
    except ValueError:
        saved_major = -1
    try:
        plugin_major = parse_version(protocol_version)[0]
    except ValueError:
        plugin_major = -1
    if (saved_major is not None and saved_major not in SUPPORTED_MAJORS) or (
        plugin_major not in SUPPORTED_MAJORS
    ):
        raise UserError(
            f"{path}: written for modality contract version {saved_protocol}, but this polydiff "
            f"loads contracts {', '.join(f'{m}.x' for m in SUPPORTED_MAJORS)} (the installed plugin "
            f"declares {protocol_version}); install a matching polydiff"
        )
    saved = (meta.get("versions") or {}).get(distribution or "")
    if saved and version and _major(saved) != _major(version):
        raise UserError(
            f"{path}: written by {distribution} {saved}, incompatible with the installed "
            f"{distribution} {version} (major version differs); install {distribution}=={saved}"
        )


def load_state(run_dir: Path, stem: str) -> dict[str, Any] | None:
    path = run_dir / f"{stem}{STATE_SUFFIX}"
    if not path.exists():
        return None
    import pickle
    import zipfile

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError,
            zipfile.BadZipFile, AttributeError, TypeError) as exc:
        # weights_only: a pickle that asks for anything but tensors and containers is refused here
        raise UserError(f"{path}: damaged or unsafe training state ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: damaged training state (not a mapping)")
    return state


def check_weights_fit(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], path: Path
) -> None:
    """Raise a one-line :class:`UserError` when the state dict ``found`` (read from ``path``) does
    not fit a network whose state dict is ``expected``: the first parameter missing, unexpected
    or of another shape is named, with both shapes."""
    for name, tensor in expected.items():
        if name not in found:
            raise UserError(
                f"{path}: weights do not match the run's network: {name} "
                f"{tuple(tensor.shape)} is missing from the file"
            )
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise UserError(
                f"{path}: weights do not match the run's network: {name} has shape "
                f"{tuple(found[name].shape)} in the file, {tuple(tensor.shape)} in the network "
                "config.json builds"
            )
    extra = [k for k in found if k not in expected]
    if extra:
        raise UserError(
            f"{path}: weights do not match the run's network: {extra[0]} "
            f"{tuple(found[extra[0]].shape)} is not a parameter of it"
        )
