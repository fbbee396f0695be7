"""The ``polydiff`` command line: one module per command, joined here.

Nothing here imports torch at module level, so ``polydiff --help`` and ``polydiff modalities``
stay fast and work even when a plugin is broken.
"""

from __future__ import annotations

from typing import Annotated

import typer

from polydiff import __version__
from polydiff.cli.common import OneLineErrors
from polydiff.cli.distill import distill_command
from polydiff.cli.evaluate import evaluate_command
from polydiff.cli.modalities import modalities_command
from polydiff.cli.plugin import plugin_app
from polydiff.cli.sample import sample_command
from polydiff.cli.samplers import samplers_command
from polydiff.cli.schedule import schedule_command
from polydiff.cli.train import train_command

app = typer.Typer(
    name="polydiff",
    cls=OneLineErrors,
    help="Score-based diffusion models across modalities: train, sample, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"polydiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Score-based diffusion models across modalities."""


app.command("modalities")(modalities_command)
app.command("samplers")(samplers_command)
app.command("train")(train_command)
app.command("sample")(sample_command)
app.command("evaluate")(evaluate_command)
app.command("schedule")(schedule_command)
app.command("distill")(distill_command)
app.add_typer(plugin_app, name="plugin")


def main() -> None:
    app(prog_name="polydiff")
