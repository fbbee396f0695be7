"""A run folder's pointers and record: where its latest and best checkpoints are, which versions
wrote it, and the refusal to start a new run over an existing one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polydiff import __version__
from polydiff.checkpoint import atomic_write_text, remove_stale_temps
from polydiff.errors import UserError
from polydiff.training.metrics_file import METRICS_FILE

CHECKPOINT_DIR = "checkpoints"
RECORD_FILE = "config.json"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The weights file ``checkpoints/latest.json`` names (the newest complete checkpoint)."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / "latest.json"
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["weights"]
    return Path(run_dir) / CHECKPOINT_DIR / name


def best_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/best.safetensors``: the checkpoint with the lowest smoothed training loss."""
    path = Path(run_dir) / CHECKPOINT_DIR / "best.safetensors"
    return path if path.exists() else None


def check_new_run(run_dir: Path) -> None:
    """Refuse, in one line, to start a run where one has already committed a checkpoint."""
    if latest_checkpoint(run_dir) is not None:
        raise UserError(f"{run_dir}: already holds a training run (use --resume or another --out)")


def plugin_distribution(modality: Any) -> tuple[str | None, str | None]:
    """(distribution, version) that provides ``modality``, when the registry knows it."""
    from polydiff.registry import get_registry

    try:
        info = {i.name: i for i in get_registry().infos(check=False)}.get(modality.name)
    except Exception:  # versions are informative; never fail a run over them
        return None, None
    return (info.distribution, info.version) if info is not None else (None, None)


def versions(modality: Any) -> dict[str, str]:
    """polydiff's version and the plugin distribution's, as recorded in runs and checkpoints."""
    out = {"polydiff": __version__}
    dist_name, version = plugin_distribution(modality)
    if dist_name is not None:
        out[dist_name] = version or ""
    return out


def write_record(run_dir: Path, modality: Any, config: dict[str, Any]) -> None:
    """``config.json``: the modality, the versions and the resolved configuration of the run."""
    record = {"modality": modality.name, "versions": versions(modality), "config": config}
    atomic_write_text(Path(run_dir) / RECORD_FILE, json.dumps(record, indent=2))


def start_run(run_dir: Path, modality: Any, config: dict[str, Any]) -> None:
    """Record a fresh run; drop what a run killed before its first checkpoint left behind."""
    write_record(run_dir, modality, config)
    (Path(run_dir) / METRICS_FILE).unlink(missing_ok=True)
    remove_stale_temps(Path(run_dir) / CHECKPOINT_DIR)
