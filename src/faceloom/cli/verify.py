"""`faceloom verify`: does a file carry faceloom's synthetic label or invisible watermark?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceloom.cli.output import echo, echo_json


def verify(
    file: Annotated[Path, typer.Argument(help="A video or image to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a video or image for faceloom's synthetic label and invisible watermark.

    Exit code 0 if the label or the watermark is found, 1 if neither is, 2 if the file cannot be read.
    """
    from faceloom.provenance import verify as run_verify

    result = run_verify(file)
    if as_json:
        echo_json(result.to_dict())
    else:
        mark = result.watermark
        verdict = (
            "synthetic, made by faceloom" if result.synthetic else "no faceloom label or watermark found"
        )
        echo(f"{result.path}: {verdict}")
        if result.label is not None:
            fields = ", ".join(f"{k}={v}" for k, v in result.label.items())
            echo(f"  label: present ({fields})")
        else:
            echo("  label: absent")
        echo(
            f"  watermark: {'found' if mark.found else 'not found'} "
            f"(z = {mark.score:.1f}, threshold {mark.threshold:g}, {mark.frames} "
            f"{'frame' if mark.frames == 1 else 'frames'} of {result.kind})"
        )
    if not result.synthetic:
        # Not typer.Exit: the app runs with standalone_mode=False, where Typer returns an Exit's
        # code instead of raising it, and the code would be lost.
        raise SystemExit(1)
