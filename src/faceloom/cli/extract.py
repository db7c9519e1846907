"""`faceloom extract` and `faceloom sample-media`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceloom.cli.options import Given, offer, settings_options
from faceloom.cli.output import echo, echo_json, state, warn
from faceloom.cli.progress import Bars
from faceloom.config import ExtractConfig


@settings_options(offer(ExtractConfig))
def extract(
    inputs: Annotated[
        list[Path], typer.Argument(help="Videos, images and folders of images.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Faceset folder to create or add to.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
    *,
    given: Given,
) -> None:
    """Find, landmark and align faces; write them to a faceset. Re-running skips inputs already done."""
    from faceloom.extract import extract as run_extract
    from faceloom.runtime import pin_threads, resolve_device

    pin_threads()
    config = given.config(ExtractConfig)
    resolve_device(config.device)
    with Bars("frame") as bars:
        result = run_extract([str(p) for p in inputs], out, config, progress=bars)
    for w in result.warnings:
        warn(w)
    summary = {
        "faceset": str(result.faceset),
        "frames": result.frames,
        "faces": result.faces,
        "sources": [
            {
                "path": str(s.path),
                "skipped": s.skipped,
                "frames": s.frames,
                "faces": s.faces,
                "empty_frames": s.empty_frames,
                "dropped_by_identity": s.dropped_by_identity,
                "stopped_early": s.stopped_early,
            }
            for s in result.sources
        ],
        "seconds": round(result.stats.wall_s, 2) if result.stats else 0.0,
        "stage_share": {k: round(v, 3) for k, v in result.stats.shares().items()} if result.stats else {},
    }
    if as_json:
        echo_json(summary)
        return
    skipped = sum(1 for s in result.sources if s.skipped)
    echo(
        f"{result.faces} faces from {result.frames} frames of {len(result.sources) - skipped} input(s)"
        + (f"; {skipped} already extracted, skipped" if skipped else "")
        + f" -> {result.faceset}"
    )
    if result.stats and state.verbose:
        echo(
            f"{result.frames / max(result.stats.wall_s, 1e-9):.1f} frames/s; "
            f"slowest stage: {result.stats.slowest()}"
        )


def sample_media(
    as_json: Annotated[bool, typer.Option("--json", help="Print the paths as JSON.")] = False,
) -> None:
    """Fetch (once) and list the demo's sample clips: CREMA-D actor 1001, a consenting research subject."""
    from faceloom.workspace.sample_media import CREDIT, fetch_sample_media

    paths = fetch_sample_media(log=echo)
    if as_json:
        echo_json({"clips": [str(p) for p in paths], "credit": CREDIT})
        return
    for p in paths:
        typer.echo(str(p))
