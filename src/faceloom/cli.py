"""The `faceloom` command: a thin Typer app that parses, calls library functions and prints."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from faceloom import __version__
from faceloom.errors import FaceloomError

app = typer.Typer(
    name="faceloom",
    help=(
        "Face swapping with a shared encoder and one decoder per person. Swap only faces whose owners agreed."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
faceset_app = typer.Typer(help="Inspect and tidy a faceset.", no_args_is_help=True)
app.add_typer(faceset_app, name="faceset")


class _State:
    verbose = 0
    quiet = False


state = _State()


def echo(message: str) -> None:
    """Print a human-readable line unless --quiet."""
    if not state.quiet:
        typer.echo(message)


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def progress_bar(desc: str, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=state.quiet, dynamic_ncols=True, leave=False)


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail; -vv shows native library logs.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and requested output.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"faceloom {__version__}")
        raise typer.Exit(0)
    state.verbose = verbose
    state.quiet = quiet
    from faceloom.runtime import quiet_native_logs

    quiet_native_logs(quiet=verbose < 2)


def main() -> None:
    """Entry point: FaceloomError becomes one line on stderr and exit code 2."""
    from faceloom.runtime import filter_native_stderr

    verbose_native = any(a in ("-vv", "-vvv") for a in sys.argv[1:]) or sys.argv[1:].count("-v") >= 2
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        if verbose_native:
            rc = app(standalone_mode=False)
        else:
            with filter_native_stderr():
                rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except FaceloomError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is saved; run the same command again to resume", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        # Usage errors of Typer's bundled click: they know how to show themselves.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise


# Command modules register themselves on `app` / `faceset_app` when imported.
from faceloom import (  # noqa: E402, F401
    cli_analyze,
    cli_convert,
    cli_extract,
    cli_faceset,
    cli_run,
    cli_train,
    cli_ui,
    cli_verify,
)
