"""``metrics.jsonl``, one JSON object per logged step, and ``loss.png`` drawn from it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polydiff.checkpoint import FILE_MODE, atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (a killed writer) is ignored."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def append_row(path: Path, record: Mapping[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def keep_rows_through(path: Path, step: int) -> None:
    """Drop the rows past ``step`` (written by a killed run after its last checkpoint), so that a
    resumed run's rows follow on without duplicates."""
    kept = [r for r in read_metrics(path) if int(r.get("step", 0)) <= step]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


def plot_losses(run_dir: Path) -> Path | None:
    """loss.png from metrics.jsonl, replaced atomically; skipped when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import tempfile

    run_dir = Path(run_dir)
    rows = [r for r in read_metrics(run_dir / METRICS_FILE) if "loss" in r and "event" not in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    marker = "o" if len(rows) < 30 else None
    values = [r["loss"] for r in rows]
    ax.plot(steps, values, lw=1, alpha=0.6, marker=marker, ms=3, label="loss (mean per row)")
    if all("smoothed_loss" in r for r in rows):
        ax.plot(steps, [r["smoothed_loss"] for r in rows], lw=1.5, label="smoothed")
        ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if min(values) > 0 and max(values) / min(values) > 10:  # log scale when it spans decades
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.96)  # tight_layout costs 0.3 s
    out = run_dir / "loss.png"
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".loss.png.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
