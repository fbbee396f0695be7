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


def read_json_file(path: Path, what: str) -> Any:
    """The JSON value in ``path``; a one-line :class:`UserError` naming the file when it cannot be
    read, is not UTF-8 or is not JSON (a damaged run folder)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: damaged {what} (not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: damaged {what} (not JSON: {exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The weights file ``checkpoints/latest.json`` names (the newest complete checkpoint);
    a one-line :class:`UserError` when the pointer is damaged."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / "latest.json"
    if not pointer.exists():
        return None
    record = read_json_file(pointer, "checkpoint pointer")
    name = record.get("weights") if isinstance(record, dict) else None
    # a plain file name inside checkpoints/: never a path that leads elsewhere
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise UserError(f"{pointer}: damaged checkpoint pointer (no valid \"weights\" file name)")
    return Path(run_dir) / CHECKPOINT_DIR / name


def read_run_record(run_dir: Path) -> tuple[dict[str, Any], str]:
    """(config, modality name) of a run folder's ``config.json``; one-line errors for a folder
    that is not a run or a damaged record."""
    path = Path(run_dir) / RECORD_FILE
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: not a run folder (no such folder)")
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.json)")
    record = read_json_file(path, "run record")
    if not isinstance(record, dict):
        raise UserError(f"{path}: damaged run record (expected a JSON object)")
    name, config = record.get("modality"), record.get("config")
    if not isinstance(name, str) or not name:
        raise UserError(f"{path}: damaged run record (no \"modality\" name)")
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise UserError(f"{path}: damaged run record (\"config\" is not a table of sections)")
    for section in ("train", "sample"):
        if section not in config:
            raise UserError(f"{path}: damaged run record (no [{section}] section)")
    return config, name


def best_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/best.safetensors``: the checkpoint with the lowest smoothed training loss."""
    path = Path(run_dir) / CHECKPOINT_DIR / "best.safetensors"
    return path if path.exists() else None


#: what a run killed before its first checkpoint leaves; a new run may start over these
RESTARTABLE = frozenset({RECORD_FILE, METRICS_FILE, "loss.png", CHECKPOINT_DIR})


def check_new_run(run_dir: Path, also_restartable: tuple[str, ...] = ()) -> None:
    """Refuse, in one line, to start a run in a folder that holds anything but the remains of a
    run killed before its first checkpoint: a committed run, checkpoint files without a
    ``latest.json``, or files that are not a run's are never overwritten. ``also_restartable``
    names further files such a run writes before its first checkpoint (a distillation's spec)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir}: exists and is not a folder")
    if latest_checkpoint(run_dir) is not None:
        raise UserError(f"{run_dir}: already holds a training run (use --resume or another --out)")
    try:
        entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
        folder = run_dir / CHECKPOINT_DIR
        saved = sorted(
            p.name for p in folder.iterdir() if not p.name.startswith(".")
        ) if folder.is_dir() else []
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot list the folder ({exc.strerror or exc})") from None
    if saved:
        raise UserError(
            f"{run_dir}: holds checkpoint files ({', '.join(saved[:3])}) but no latest.json; "
            "not overwriting them (use another --out)"
        )
    other = [e for e in entries if e not in RESTARTABLE and e not in also_restartable]
    if other:
        raise UserError(
            f"{run_dir}: already holds files that are not a run's ({', '.join(other[:3])}); "
            "choose a new or empty --out"
        )


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
