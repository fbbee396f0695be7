"""What every command shares: the consoles, the one-line error convention, and the command group
that turns Click's usage errors into that one line too."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # Typer 0.20+ carries its own copy of Click, whose exceptions are not click's
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on top of Click
    from click import exceptions as click_errors

# emoji=False: ":x" in a user's text ("cuda:x") must not turn into an emoji either
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

EXIT_USAGE = 2

__all__ = ["EXIT_USAGE", "HeaderFirst", "OneLineErrors", "console", "err_console", "escape", "fail", "say", "user_errors"]


def fail(message: str) -> typer.Exit:
    """Print ``message`` as one red line on stderr; return the exit to raise."""
    # user text (paths, keys, values) may hold [brackets]: never read it as markup
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def one_line(text: str) -> str:
    """``text`` with its line breaks folded: a message from a library may span several lines."""
    return " ".join(str(text).split()) or "(no message)"


def say(markup: str, *user_text: Any, err: bool = False) -> None:
    """Print ``markup`` with ``{}`` fields filled by ``user_text``, each escaped: paths, names and
    values from the user are never read as rich markup."""
    text = markup.format(*(escape(str(t)) for t in user_text))
    (err_console if err else console).print(text, highlight=False, soft_wrap=True)


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


class HeaderFirst(Console):
    """A console that prints ``header`` just before its first output: `polydiff train` names the
    run folder when training output begins, so that an error found while the data are loaded
    stays the only line."""

    def __init__(self, header: str, **kwargs: Any):
        super().__init__(emoji=False, **kwargs)
        self._header: str | None = header

    def __enter__(self) -> Console:  # every print and live refresh enters the console
        header, self._header = self._header, None
        if header:
            super().print(header, highlight=False, soft_wrap=True)
        return super().__enter__()


class OneLineErrors(TyperGroup):
    """The root command group: a Click usage error (an unknown option, ``--steps 0``, a missing
    argument) is one line on stderr with exit code 2, like every other bad input, instead of
    Typer's usage block and framed panel."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `polydiff` alone: the help, as usual
                exc.show()
                sys.exit(exc.exit_code)
            command = getattr(getattr(exc, "ctx", None), "command_path", None) or "polydiff"
            hint = f" (see {command} --help)" if isinstance(exc, click_errors.UsageError) else ""
            fail(f"{exc.format_message()}{hint}")
            sys.exit(EXIT_USAGE if isinstance(exc, click_errors.UsageError) else exc.exit_code)
        except typer.Abort:
            err_console.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
