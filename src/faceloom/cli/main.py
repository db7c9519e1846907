"""The `faceloom` command: a thin Typer app that parses, calls library functions and prints.

Every command is a plain function in its own module of this package and is registered here, in
one list (:func:`build_app`); no command module imports this one.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from faceloom import __version__
from faceloom.cli import analyze, convert, extract, faceset, live, run, train, ui, verify
from faceloom.cli.output import state
from faceloom.errors import FaceloomError


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


def build_app() -> typer.Typer:
    """The app with every command registered."""
    app = typer.Typer(
        name="faceloom",
        help="Face swapping with a shared encoder and one decoder per person. "
        "Swap only faces whose owners agreed.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback()(_root)
    app.command()(extract.extract)
    app.command("sample-media")(extract.sample_media)
    app.command()(analyze.analyze)
    app.command()(train.train)
    app.command()(train.pretrain)
    app.command()(train.export)
    app.command()(convert.convert)
    app.command()(live.live)
    app.command("eval")(analyze.eval_model)
    app.command(cls=run.ManyValuesCommand)(run.run)
    app.command(cls=run.ManyValuesCommand)(run.demo)
    app.command()(verify.verify)
    app.command()(ui.ui)

    faceset_app = typer.Typer(help="Inspect and tidy a faceset.", no_args_is_help=True)
    faceset_app.command("info")(faceset.info_cmd)
    faceset_app.command("sort")(faceset.sort_cmd)
    faceset_app.command("remove")(faceset.remove_cmd)
    faceset_app.command("preview")(faceset.preview_cmd)
    faceset_app.command("import")(faceset.import_cmd)
    app.add_typer(faceset_app, name="faceset")

    model_app = typer.Typer(help="Inspect trained models.", no_args_is_help=True)
    model_app.command("info")(train.model_info)
    app.add_typer(model_app, name="model")
    return app


app = build_app()


def main() -> None:
    """Entry point: FaceloomError and a refused setting become one line on stderr and exit code 2."""
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
