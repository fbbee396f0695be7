"""How a training run ends before its last step; each carries one line for the user."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TrainingStopped(Exception):
    """Training ended before ``steps``; ``str(e)`` is one line for the user."""

    def __init__(self, message: str, *, step: int, checkpoint: Path | None, run_dir: Path):
        super().__init__(message)
        self.step, self.checkpoint, self.run_dir = step, checkpoint, run_dir


class TrainingInterrupted(TrainingStopped):
    """SIGINT (Ctrl-C) or SIGTERM: a checkpoint was saved at ``step``; ``signum`` says which."""

    def __init__(self, message: str, *, signum: int, **kw: Any):
        super().__init__(message, **kw)
        self.signum = signum


class NonFiniteLossError(TrainingStopped):
    """``max_nonfinite`` steps in a row had a non-finite loss; the last checkpoint is untouched."""
