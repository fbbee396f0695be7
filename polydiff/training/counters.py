"""Everything the training loop counts, in one record that a checkpoint saves and restores whole.

A resumed run continues from these numbers exactly: the step and the position in the data order,
the skipped-step tallies, the smoothed loss that picks the best checkpoint, the loss window of the
next metrics row, and the training time (which also times the wall-clock checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: smoothing of the training loss that decides the best checkpoint (an EMA over steps)
LOSS_SMOOTHING = 0.98


@dataclass
class Counters:
    step: int = 0
    batches_seen: int = 0  # global batches consumed, skipped steps included
    skipped: int = 0  # steps skipped for a non-finite loss or gradient, in all
    nonfinite_streak: int = 0  # ... in a row, up to now
    smooth_num: float = 0.0  # the smoothed loss is smooth_num / smooth_den (bias-corrected EMA)
    smooth_den: float = 0.0
    best_loss: float = math.inf  # lowest smoothed loss at a checkpoint, and that checkpoint's step
    best_step: int = -1
    window_sum: float = 0.0  # losses since the last metrics row
    window_count: int = 0
    last_loss: float = math.nan  # mean loss of the last metrics row
    elapsed: float = 0.0  # seconds spent in the loop, over every segment of a resumed run
    saved_step: int = -1  # step and elapsed time of the last checkpoint
    saved_elapsed: float = 0.0

    def observe(self, loss: float) -> None:
        """Count a finite step's loss."""
        self.nonfinite_streak = 0
        self.window_sum, self.window_count = self.window_sum + loss, self.window_count + 1
        self.smooth_num = LOSS_SMOOTHING * self.smooth_num + (1 - LOSS_SMOOTHING) * loss
        self.smooth_den = LOSS_SMOOTHING * self.smooth_den + (1 - LOSS_SMOOTHING)

    def smoothed_loss(self) -> float:
        return self.smooth_num / self.smooth_den if self.smooth_den > 0 else math.inf

    def close_window(self) -> float:
        """The mean loss since the last call (the next metrics row's), and start a new window."""
        self.last_loss = self.window_sum / self.window_count
        self.window_sum, self.window_count = 0.0, 0
        return self.last_loss

    def mark_saved(self) -> None:
        """A checkpoint of this step: called before the state is written, so it records itself."""
        if self.smoothed_loss() < self.best_loss:
            self.best_loss, self.best_step = self.smoothed_loss(), self.step
        self.saved_step, self.saved_elapsed = self.step, self.elapsed

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], per_epoch: int) -> Counters:
        """The counters of a training state; states written before they were one record kept
        them as top-level entries, with the data position as (epoch, offset) in the oldest."""
        known = {f.name for f in fields(cls)}
        if "counters" in state:
            saved = dict(state["counters"])
        else:
            saved = {k: state[k] for k in known if k in state}
            if "batches_seen" not in saved:
                saved["batches_seen"] = int(state["epoch"]) * per_epoch + int(state["offset"])
        saved.setdefault("saved_step", saved["step"])
        saved.setdefault("saved_elapsed", saved.get("elapsed", 0.0))
        out = cls(**{k: v for k, v in saved.items() if k in known})
        for f in fields(cls):  # plain Python numbers, whatever the pickle held
            kind = int if isinstance(f.default, int) else float
            setattr(out, f.name, kind(getattr(out, f.name)))
        return out


class counter:  # lower case: it reads like dataclasses.field() where it is used
    """``step = counter()`` in a class with ``self.counters``: reads and writes
    ``self.counters.step``, so code that knew the loose attributes keeps working."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.counters, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.counters, self.name, value)
