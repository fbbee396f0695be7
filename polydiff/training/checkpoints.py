"""The checkpoint lifecycle of a run folder: write a step's files, commit them in ``latest.json``,
keep the last few and the best, clean up after a crash, and read the latest back.

A checkpoint is ``step-NNNNNNN.safetensors`` (weights and metadata) beside ``.state.pt``
(optimizer, RNG, counters); :mod:`polydiff.checkpoint` writes each file atomically, and naming the
pair in ``latest.json`` is the commit point, so a killed run leaves the previous one intact.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from polydiff.checkpoint import (
    STATE_SUFFIX,
    WEIGHTS_SUFFIX,
    atomic_link,
    atomic_write_text,
    check_compatible,
    load_all_weights,
    load_state,
    remove_stale_temps,
    save_checkpoint,
)
from polydiff.errors import UserError
from polydiff.training.ema import group_name
from polydiff.training.metrics_file import METRICS_FILE, keep_rows_through
from polydiff.training.run_folder import CHECKPOINT_DIR, latest_checkpoint

#: default of ``train.keep_last``
KEEP_LAST = 2


def stem_of(step: int) -> str:
    return f"step-{step:07d}"


def _step_of(stem: str) -> int:
    try:
        return int(stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


class CheckpointFolder:
    """``run_dir/checkpoints``: the last ``keep_last`` step checkpoints and the best one."""

    def __init__(self, run_dir: Path, keep_last: int = KEEP_LAST, every: int = 0):
        if keep_last < 1:
            raise UserError(f"train.keep_last = {keep_last}: must be at least 1")
        self.run_dir, self.keep_last = Path(run_dir), keep_last
        self.every = max(int(every), 0)  # train.checkpoint_every; 0: every checkpoint counts
        self.folder = self.run_dir / CHECKPOINT_DIR

    def write(
        self,
        step: int,
        *,
        model: Mapping[str, torch.Tensor],
        emas: Sequence[Mapping[str, torch.Tensor]],
        state: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> Path:
        """Write and commit the checkpoint of ``step``; returns its weights path."""
        stem = stem_of(step)
        groups = {group_name(i): sd for i, sd in enumerate(emas)}
        path = save_checkpoint(
            self.folder,
            stem,
            model=model,
            ema=groups.pop("ema"),
            state=state,
            metadata=metadata,
            extra=groups,
        )
        atomic_write_text(
            self.folder / "latest.json",
            json.dumps({"weights": path.name, "state": f"{stem}{STATE_SUFFIX}", "step": step}),
        )
        return path

    def link_best(self, best_step: int, best_loss: float) -> None:
        """``best.safetensors``, a hard link to the best step's weights, and ``best.json``."""
        if best_step < 0:
            return
        src = self.folder / f"{stem_of(best_step)}{WEIGHTS_SUFFIX}"
        pointer = self.folder / "best.json"
        record = {"weights": src.name, "step": best_step, "smoothed_loss": best_loss}
        if not src.exists():
            return
        with contextlib.suppress(OSError, json.JSONDecodeError):
            linked = (self.folder / "best.safetensors").exists()
            if linked and json.loads(pointer.read_text()) == record:
                return
        atomic_link(src, self.folder / "best.safetensors")
        atomic_write_text(pointer, json.dumps(record))

    def prune(self, step: int, best_step: int) -> None:
        """Keep the last ``keep_last`` scheduled checkpoints (every ``checkpoint_every`` steps) up
        to ``step``, the newest one (what a resume reads), and the best one; drop the rest,
        including checkpoints past ``step`` (left by a killed run that we resumed before them).

        Wall-clock and end-of-run checkpoints do not count toward ``keep_last``: on a slow run
        they come every few minutes and would push out the step checkpoints the user asked for."""
        stems = sorted(
            {p.name[: -len(WEIGHTS_SUFFIX)] for p in self.folder.glob(f"step-*{WEIGHTS_SUFFIX}")}
            | {p.name[: -len(STATE_SUFFIX)] for p in self.folder.glob(f"step-*{STATE_SUFFIX}")},
            key=_step_of,
        )
        current = [s for s in stems if _step_of(s) <= step]
        scheduled = [s for s in current if self.every and _step_of(s) % self.every == 0]
        counted = scheduled if self.every else current
        keep = set(counted[-self.keep_last :]) | set(current[-1:]) | {stem_of(best_step)}
        for stem in stems:
            if stem not in keep:
                for suffix in (WEIGHTS_SUFFIX, STATE_SUFFIX):
                    (self.folder / f"{stem}{suffix}").unlink(missing_ok=True)

    def clean_after_crash(self, step: int, best_step: int, best_loss: float) -> None:
        """Drop what a killed run wrote after its checkpoint of ``step``: temporary files,
        checkpoints past it, metric rows past it."""
        remove_stale_temps(self.folder)
        remove_stale_temps(self.run_dir)
        self.prune(step, best_step)
        self.link_best(best_step, best_loss)
        keep_rows_through(self.run_dir / METRICS_FILE, step)

    def read_latest(
        self, *, protocol_version: str, distribution: str | None, version: str | None
    ) -> tuple[Path, dict[str, dict[str, torch.Tensor]], dict[str, Any], dict[str, Any]]:
        """(path, weight groups, metadata, training state) of the committed checkpoint, after a
        compatibility check against the installed plugin; one-line errors otherwise."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise UserError(f"{self.run_dir}: no checkpoint to resume from (checkpoints/latest.json)")
        if not path.is_file():
            raise UserError(f"{path}: named by checkpoints/latest.json but missing")
        groups, meta = load_all_weights(path)
        check_compatible(
            meta,
            path,
            protocol_version=protocol_version,
            distribution=distribution,
            version=version,
        )
        state = load_state(path.parent, path.name[: -len(WEIGHTS_SUFFIX)])
        if state is None or state.get("step") != meta.get("step"):
            raise UserError(f"{path}: training state is missing or does not match the weights")
        return path, groups, meta, state


def checkpoint_minutes(tc: Mapping[str, Any]) -> float:
    """``train.checkpoint_minutes``: training time between checkpoints (0: by steps only)."""
    value = tc.get("checkpoint_minutes", 5.0)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise UserError(f"train.checkpoint_minutes = {value!r}: expected a finite number >= 0")
    return float(value)
