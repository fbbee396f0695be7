"""`polydiff plugin new`: write a working modality plugin to start your own from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from polydiff.cli.common import console, user_errors

plugin_app = typer.Typer(
    name="plugin",
    help="Start a modality plugin of your own.",
    no_args_is_help=True,
)


@plugin_app.command("new")
def new_command(
    name: Annotated[
        str,
        typer.Argument(
            help="Modality name: lowercase letters, digits, - and _, starting with a letter "
            "(package polydiff_NAME, distribution polydiff-NAME)."
        ),
    ],
    directory: Annotated[
        Path | None,
        typer.Argument(help="Folder to write, new or empty (default ./polydiff-NAME)."),
    ] = None,
) -> None:
    """Write a complete minimal modality distribution that installs, trains and samples as written.

    It learns 1-D sequences (sums of sines, or your .npy file) with a small MLP.
    Edit its core.py for your data; run its conformance test after every change.
    """
    from polydiff.scaffold import write_plugin

    target = directory if directory is not None else Path(f"polydiff-{name}")
    with user_errors():
        written = write_plugin(name, target)
    console.print(f"wrote plugin [bold]{escape(name)}[/] in {escape(str(target))}:", highlight=False)
    for path in written:
        console.print(f"  {escape(str(path.relative_to(target)))}", highlight=False)
    console.print("next:", highlight=False)
    for step in (
        f"pip install -e {target}",
        "polydiff modalities",
        f"polydiff train --modality {name} --out runs/{name}",
        f"pytest {target / 'tests'}",
    ):
        console.print(f"  {escape(step)}", highlight=False, soft_wrap=True)
