"""Progress display: a rich bar on a terminal, periodic plain lines otherwise (CI logs, pipes)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StepProgress:
    """``with StepProgress(total, "train") as p: p.advance(loss=...)``."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        console: Console | None = None,
        start: int = 0,
        unit: str = "it",
        items_per_step: int = 0,
        item_unit: str = "samples",
        enabled: bool = True,
    ):
        """``items_per_step`` > 0 adds an items/s figure (samples per second in training);
        ``enabled=False`` shows nothing (the other ranks of a distributed run)."""
        self.total, self.label, self.unit = total, label, unit
        self.items_per_step, self.item_unit, self.enabled = items_per_step, item_unit, enabled
        self.console = console or Console(stderr=True)
        self.done = start
        self._start_done = start
        self._t0 = time.perf_counter()
        self._fields: dict[str, Any] = {}
        self._live = enabled and self.console.is_terminal
        self._next_line = 0.0
        self._progress: Progress | None = None

    def __enter__(self) -> StepProgress:
        if self._live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.label, total=self.total, completed=self.done, stats=""
            )
        return self

    def rate(self) -> float:
        elapsed = time.perf_counter() - self._t0
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def _stats(self) -> str:
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self._fields.items()]
        rate = self.rate()
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.items_per_step > 0:
            parts.append(f"{rate * self.items_per_step:.1f} {self.item_unit}/s")
        return "  ".join(parts)

    def print(self, message: str) -> None:
        """A line above the bar (warnings during training)."""
        if self.enabled:
            self.console.print(message, highlight=False, soft_wrap=True)

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self._fields.update(fields)
        if self._progress is not None:
            self._progress.update(self._task, advance=n, stats=self._stats())
            return
        if not self.enabled:
            return
        now = time.perf_counter()
        if now >= self._next_line or self.done >= self.total:
            self._next_line = now + 10.0
            rate = self.rate()
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            self.console.print(
                f"{self.label}: {self.done}/{self.total}  {self._stats()}  eta {eta:.0f}s",
                highlight=False,
            )

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
