"""docs/benchmarks.md: each benchmark script owns one section between its two markers."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def splice_section(start: str, end: str, section: str, path: Path = DOCS) -> None:
    """Replace the text from ``start`` to ``end`` (both included; ``section`` carries them) or
    append ``section``; written atomically, so a killed run leaves the old file."""
    from polydiff.atomic import atomic_write_text

    text = path.read_text()
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(path, text)
