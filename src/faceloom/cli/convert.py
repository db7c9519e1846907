"""`faceloom convert`: swap faces through a video, an image or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceloom.cli.options import Given, offer, settings_options
from faceloom.cli.output import echo, echo_json, state, warn
from faceloom.cli.progress import Bars
from faceloom.config import ConvertConfig


@settings_options(offer(ConvertConfig))
def convert(
    input: Annotated[Path, typer.Argument(help="A video, an image, or a folder of images.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Trained MODEL_DIR, or a DeepFaceLab .dfm.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output video, image or folder.")],
    faceset: Annotated[
        Path | None, typer.Option(help="Use the faces of this faceset of the video instead of detecting.")
    ] = None,
    preview: Annotated[
        int | None, typer.Option(help="Only convert N evenly spaced frames to a PNG sheet (--out x.png).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    *,
    given: Given,
) -> None:
    """Swap faces through a video with its audio (or images), labelled as synthetic."""
    from faceloom.convert.pipeline import convert as run_convert
    from faceloom.convert.pipeline import convert_preview
    from faceloom.runtime import pin_threads

    config = given.config(ConvertConfig)
    pin_threads(config.threads)
    if not config.watermark:
        warn("--no-watermark: the output carries only the metadata label, which re-encoding can drop")
    if preview is not None:
        sheet = convert_preview(input, model, out, preview, config, overwrite=overwrite)
        echo(f"preview sheet: {sheet}")
        return
    with Bars("frame") as bars:  # a bar appears at the first frame: a refused input leaves none
        result = run_convert(input, model, out, config, faceset=faceset, overwrite=overwrite, progress=bars)
    for w in result.warnings:
        warn(w)
    summary: dict[str, object] = {
        "output": str(result.output),
        "frames": result.frames,
        "frames_with_swaps": result.frames_with_swaps,
        "faces_swapped": result.faces_swapped,
        "faces_left_alone": result.faces_left_alone,
        "audio": result.audio,
        "content_credentials": result.credentials,
    }
    if result.stats is not None:
        summary["frames_per_s"] = round(result.frames / max(result.stats.wall_s, 1e-9), 1)
        summary["stage_busy_share"] = {k: round(v, 2) for k, v in result.stats.shares().items()}
        summary["slowest_stage"] = result.stats.slowest()
    if as_json:
        echo_json(summary)
        return
    echo(
        f"wrote {result.output}: {result.frames} frame(s), {result.faces_swapped} face(s) swapped"
        + (f", {result.faces_left_alone} left alone" if result.faces_left_alone else "")
        + (f", audio {result.audio}" if result.audio else "")
        + ("; signed Content Credentials" if result.credentials else "; no Content Credentials")
    )
    if result.stats is not None and state.verbose:
        echo(f"{summary['frames_per_s']} frames/s; slowest stage: {summary['slowest_stage']}")
