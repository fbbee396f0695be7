"""What every command shares: the consoles and the one-line error convention."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

EXIT_USAGE = 2


def fail(message: str) -> typer.Exit:
    """Print ``message`` as one red line on stderr; return the exit to raise."""
    # user text (paths, keys, values) may hold [brackets]: never read it as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line and exit code 2, never a traceback."""
    from polydiff.errors import UserError
    from polydiff.protocol import DataError
    from polydiff.registry import RegistryError

    try:
        yield
    except (UserError, DataError, RegistryError) as exc:
        raise fail(str(exc)) from None
