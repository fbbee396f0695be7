"""`polydiff modalities`: the installed modality plugins and whether each loads."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from polydiff.cli.common import console

STATUS_STYLE = {"ok": "green", "broken": "red", "conflict": "red", "unchecked": "yellow"}


def modalities_command(
    check: Annotated[
        bool, typer.Option(help="Import each plugin's entry point to report its status.")
    ] = True,
) -> None:
    """List modality plugins: name, distribution, version and status."""
    from polydiff.registry import get_registry

    infos = get_registry().infos(check=check)
    if not infos:
        console.print("no modality plugins found (install one, e.g. pip install -e modalities/images)")
        return
    table = Table("name", "distribution", "version", "status", "detail", box=None)
    for info in infos:
        style = STATUS_STYLE.get(info.status, "")
        table.add_row(
            escape(info.name),
            escape(info.distribution),
            escape(info.version),
            f"[{style}]{info.status}[/]",
            escape(info.reason or "") or (f"[yellow]{escape(info.warning)}[/]" if info.warning else ""),
        )
    console.print(table)
