"""Periodic work of the training loop, as a list: each action says when it is due and what to do.

Adding work (another metric, an upload) is one more :class:`PeriodicAction` in the list the loop
builds; the loop itself does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PeriodicAction:
    """``fn()`` after each step that is due: every ``every`` steps (0: never), or whenever
    ``every(step)`` is true.

    ``at_last`` treats the run's last step apart: ``True``: always due there; ``False``: never
    (the end of the run does that work itself); ``None``: like any other step.
    """

    name: str
    every: int | Callable[[int], bool]
    fn: Callable[[], object]
    at_last: bool | None = None

    def due(self, step: int, last: int) -> bool:
        if step == last and self.at_last is not None:
            return self.at_last
        if callable(self.every):
            return bool(self.every(step))
        return self.every > 0 and step % self.every == 0


def run_due(actions: Sequence[PeriodicAction], step: int, last: int) -> list[str]:
    """Run, in order, the actions due after ``step`` of ``last``; returns their names."""
    done = []
    for action in actions:
        if action.due(step, last):
            action.fn()
            done.append(action.name)
    return done
