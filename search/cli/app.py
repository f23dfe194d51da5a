"""The ``fsearch`` command line: the typer app and its entry point, one error line per failure.

The commands live in :mod:`search.cli.search` (run, studies, show), :mod:`search.cli.model`
(export-best, train, evaluate, predict) and :mod:`search.cli.dashboard` (dashboard, report);
each is a thin shell over the library.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer
from rich.console import Console

from search.cli import dashboard as cli_dashboard
from search.cli import model as cli_model
from search.cli import search as cli_search
from search.errors import FsearchError, one_line

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Search CNN architectures and training settings on Fashion-MNIST with Optuna.",
)  # fmt: skip
app.add_typer(cli_search.commands)  # no name: the commands sit at the top level
app.add_typer(cli_model.commands)
app.add_typer(cli_dashboard.commands)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """fsearch: search CNNs for Fashion-MNIST; see each command's --help."""


def _is_usage_error(exc: Exception) -> bool:
    """Typer's (click's) usage errors: bad option values, unknown options, missing arguments."""
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", None) == 2


def main() -> None:
    """Entry point: run the app and turn every user error into one line and exit code 2."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    debug = "--debug" in sys.argv[1:]
    try:
        rv = app(standalone_mode=False, prog_name="fsearch")
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(1)
    except FsearchError as exc:
        if debug:
            err.print(traceback.format_exc(), markup=False)
        err.print(f"Error: {one_line(str(exc))}", markup=False)
        sys.exit(2)
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        ctx = getattr(exc, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "fsearch"
        message = one_line(exc.format_message())  # type: ignore[attr-defined]
        err.print(f"Error: {message}; see '{cmd} --help'", markup=False)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
