"""`faceloom verify`: does a file carry faceloom's synthetic label or invisible watermark?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceloom.cli.output import echo, echo_json

if TYPE_CHECKING:
    from faceloom.media.credentials import CredentialsReport


def credentials_line(report: CredentialsReport | None) -> str:
    """One line about a file's C2PA manifest."""
    if report is None:
        return "none"
    if not report.valid:
        return f"INVALID ({', '.join(report.failures) or report.state}): the file or its manifest was changed"
    who = report.signer or "an unnamed signer"
    trust = (
        "a local certificate made by faceloom on the machine that wrote it, trusted nowhere else"
        if report.local
        else (
            "a certificate on a trust list"
            if report.state == "Trusted"
            else "a certificate no trust list names"
        )
    )
    what = (
        "made with a trained model (trainedAlgorithmicMedia)"
        if report.synthetic
        else "no synthetic-media action"
    )
    model = ""
    if report.model:
        facts = report.model
        model = (
            f"; model {facts.get('architecture', '?')} {facts.get('resolution', '?')} px, "
            f"{facts.get('training_steps', '?')} steps"
        )
    return f"valid ({report.state}), signed by {who}: {trust}; {report.generator or '?'}, {what}{model}"


def verify(
    file: Annotated[Path, typer.Argument(help="A video or image to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a video or image for C2PA Content Credentials, faceloom's label and its watermark.

    Exit code 0 if the watermark, the label or valid credentials saying it is synthetic are found,
    1 if none is, 2 if the file cannot be read.
    """
    from faceloom.provenance import verify as run_verify

    result = run_verify(file)
    if as_json:
        echo_json(result.to_dict())
    else:
        mark = result.watermark
        verdict = (
            "synthetic, made by faceloom"
            if result.synthetic
            else "no faceloom label or watermark found, and no content credentials"
        )
        echo(f"{result.path}: {verdict}")
        if result.label is not None:
            fields = ", ".join(f"{k}={v}" for k, v in result.label.items())
            echo(f"  label: present ({fields})")
        else:
            echo("  label: absent")
        where = ""
        if mark.found and mark.region is not None and mark.region != (0.0, 0.0, 1.0, 1.0):
            left, top, width, height = mark.region
            where = (
                f"; the file shows {width:.0%} x {height:.0%} of the marked frame, from {left:.0%}, {top:.0%}"
            )
        echo(
            f"  watermark: {'found' if mark.found else 'not found'} "
            f"(score {mark.score:.1f}, threshold {mark.threshold:g}, {mark.frames} "
            f"{'frame' if mark.frames == 1 else 'frames'} of {result.kind}{where})"
        )
        echo(f"  content credentials: {credentials_line(result.credentials)}")
    if not result.synthetic:
        # Not typer.Exit: the app runs with standalone_mode=False, where Typer returns an Exit's
        # code instead of raising it, and the code would be lost.
        raise SystemExit(1)
