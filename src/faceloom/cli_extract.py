"""`faceloom extract`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faceloom.cli import app, echo, echo_json, progress_bar, state, warn
from faceloom.config import DetectorName, DeviceChoice, ExtractConfig, ImageFormat


@app.command()
def extract(
    inputs: Annotated[
        list[Path], typer.Argument(help="Videos, images and folders of images.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Faceset folder to create or add to.")],
    detector: Annotated[DetectorName, typer.Option(help="Face detector backend.")] = "mediapipe",
    size: Annotated[int, typer.Option(help="Side of the stored head crop in pixels.")] = 384,
    every_n: Annotated[int, typer.Option("--every-n", help="Use every N-th frame of a video.")] = 1,
    min_size: Annotated[
        int, typer.Option("--min-size", help="Ignore faces smaller than this many pixels.")
    ] = 40,
    max_faces_per_frame: Annotated[int, typer.Option("--max-faces-per-frame")] = 4,
    identity: Annotated[
        list[Path] | None, typer.Option("--identity", help="Reference image(s) of the person to keep.")
    ] = None,
    identity_threshold: Annotated[
        float,
        typer.Option("--identity-threshold", help="Max embedding distance to the reference (dlib: 0.6)."),
    ] = 0.6,
    blur_threshold: Annotated[
        float,
        typer.Option(
            "--blur-threshold", help="Drop faces sharper than nothing below this score (0 = keep all)."
        ),
    ] = 0.0,
    image_format: Annotated[ImageFormat, typer.Option("--format", help="Crop image format.")] = "jpg",
    no_rotate_retry: Annotated[
        bool,
        typer.Option("--no-rotate-retry", help="Do not retry frames without a face turned by +-90 degrees."),
    ] = False,
    device: Annotated[
        DeviceChoice, typer.Option(help="Device for model work (detection runs on the CPU).")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")] = False,
) -> None:
    """Find, landmark and align faces; write them to a faceset. Re-running skips inputs already done."""
    from faceloom.extract import extract as run_extract
    from faceloom.runtime import pin_threads, resolve_device

    pin_threads()
    resolve_device(device)
    config = ExtractConfig(
        detector=detector,
        size=size,
        every_n=every_n,
        min_size=min_size,
        max_faces_per_frame=max_faces_per_frame,
        identity_refs=tuple(str(p) for p in identity or ()),
        identity_threshold=identity_threshold,
        blur_threshold=blur_threshold,
        image_format=image_format,
        rotate_retry=not no_rotate_retry,
        device=device,
    )
    bars: dict[str, Any] = {}

    def progress(label: str, done: int, total: int) -> None:
        bar = bars.get(label)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[label] = progress_bar(Path(label).name, total)
        bar.total = max(total, done)
        bar.n = done
        if done % 10 == 0 or done >= total:
            bar.refresh()

    try:
        result = run_extract([str(p) for p in inputs], out, config, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
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


@app.command("sample-media")
def sample_media(
    as_json: Annotated[bool, typer.Option("--json", help="Print the paths as JSON.")] = False,
) -> None:
    """Fetch (once) and list the demo's sample clips: CREMA-D actor 1001, a consenting research subject."""
    from faceloom.sample_media import CREDIT, fetch_sample_media

    paths = fetch_sample_media(log=echo)
    if as_json:
        echo_json({"clips": [str(p) for p in paths], "credit": CREDIT})
        return
    for p in paths:
        typer.echo(str(p))
