"""`faceloom convert`: swap faces through a video, an image or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faceloom.cli import app, echo, echo_json, progress_bar, state, warn
from faceloom.config import (
    BlendChoice,
    ColorChoice,
    ConvertConfig,
    DetectorName,
    DeviceChoice,
    LabelChoice,
    MaskChoice,
    Precision,
    SideChoice,
)


@app.command()
def convert(
    input: Annotated[Path, typer.Argument(help="A video, an image, or a folder of images.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Trained MODEL_DIR.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output video, image or folder.")],
    to: Annotated[SideChoice, typer.Option(help="Render this person: b swaps A's faces for B's.")] = "b",
    mask: Annotated[
        MaskChoice,
        typer.Option(help="auto = learned if the model has one, else hull; segment keeps hands in front."),
    ] = "auto",
    erode: Annotated[float, typer.Option(help="Shrink (+) or grow (-) the mask, share of the crop.")] = 0.0,
    blur: Annotated[float, typer.Option(help="Mask feather, share of the crop.")] = 0.1,
    blend: Annotated[BlendChoice, typer.Option(help="Paste with alpha or Poisson (seamless).")] = "alpha",
    color: Annotated[ColorChoice, typer.Option(help="Colour-match the new face to the frame.")] = "rct",
    sharpen: Annotated[float, typer.Option(help="Unsharp-mask amount for the new face (0 = off).")] = 0.0,
    smooth: Annotated[float, typer.Option(help="Temporal landmark smoothing strength (0 = off).")] = 1.0,
    side_by_side: Annotated[
        bool, typer.Option("--side-by-side", help="Write original and swapped next to each other.")
    ] = False,
    scale: Annotated[float, typer.Option(help="Scale the output frames.")] = 1.0,
    codec: Annotated[str, typer.Option(help="Video encoder.")] = "libx264",
    crf: Annotated[int, typer.Option(help="Encoder quality (lower is better).")] = 18,
    preset: Annotated[str, typer.Option(help="x264/x265 preset.")] = "veryfast",
    start: Annotated[float | None, typer.Option(help="Start of the converted range, seconds.")] = None,
    end: Annotated[float | None, typer.Option(help="End of the converted range, seconds.")] = None,
    faceset: Annotated[
        Path | None, typer.Option(help="Use the faces of this faceset of the video instead of detecting.")
    ] = None,
    all_faces: Annotated[
        bool, typer.Option("--all-faces", help="Swap every face, not only the source person's.")
    ] = False,
    detector: Annotated[DetectorName, typer.Option(help="Face detector.")] = "mediapipe",
    label: Annotated[LabelChoice, typer.Option(help="visible adds a corner label.")] = "none",
    no_watermark: Annotated[
        bool,
        typer.Option(
            "--no-watermark",
            help="Do not embed the invisible watermark (the metadata label stays). See README.",
        ),
    ] = False,
    preview: Annotated[
        int | None, typer.Option(help="Only convert N evenly spaced frames to a PNG sheet (--out x.png).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Frames per model batch.")] = 16,
    device: Annotated[DeviceChoice, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto = bf16 where supported.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Swap faces through a video with its audio (or images), labelled as synthetic."""
    from faceloom.convert.pipeline import convert as run_convert
    from faceloom.convert.pipeline import convert_preview
    from faceloom.runtime import pin_threads

    pin_threads()
    config = ConvertConfig(
        to=to,
        mask=mask,
        erode=erode,
        blur=blur,
        blend=blend,
        color=color,
        sharpen=sharpen,
        smooth=smooth,
        side_by_side=side_by_side,
        scale=scale,
        codec=codec,
        crf=crf,
        preset=preset,
        start=start,
        end=end,
        all_faces=all_faces,
        detector=detector,
        watermark=not no_watermark,
        label=label,
        batch_size=batch_size,
        device=device,
        precision=precision,
    )
    if no_watermark:
        warn("--no-watermark: the output carries only the metadata label, which re-encoding can drop")
    if preview is not None:
        sheet = convert_preview(input, model, out, preview, config, overwrite=overwrite)
        echo(f"preview sheet: {sheet}")
        return
    bars: list[Any] = []  # made at the first frame, so an input refused at once leaves no bar behind

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(progress_bar("convert", total))
        bar = bars[0]
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = run_convert(input, model, out, config, faceset=faceset, overwrite=overwrite, progress=update)
    finally:
        for bar in bars:
            bar.close()
    for w in result.warnings:
        warn(w)
    summary = {
        "output": str(result.output),
        "frames": result.frames,
        "frames_with_swaps": result.frames_with_swaps,
        "faces_swapped": result.faces_swapped,
        "faces_left_alone": result.faces_left_alone,
        "audio": result.audio,
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
    )
    if result.stats is not None and state.verbose:
        echo(f"{summary['frames_per_s']} frames/s; slowest stage: {summary['slowest_stage']}")
