"""What the CLI prints: human lines (quiet-able), JSON, warnings. The library never prints."""

from __future__ import annotations

import json
from typing import Any

import typer


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
