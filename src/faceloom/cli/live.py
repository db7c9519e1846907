"""`faceloom live`: a trained model on a camera, a stream or a file played in real time."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from faceloom.cli.options import Given, offer, settings_options
from faceloom.cli.output import echo, echo_json, state, warn
from faceloom.config import ConvertConfig, LiveConfig

if TYPE_CHECKING:
    from faceloom.live.session import LiveReport

LIVE_CONVERT_SETTINGS = (
    "to",
    "morph",
    "mask",
    "erode",
    "blur",
    "color",
    "sharpen",
    "smooth",
    "scale",
    "side_by_side",
    "all_faces",
    "identity_threshold",
    "detector",
    "min_size",
    "watermark",
    "credentials",
    "device",
    "precision",
    "threads",
)
"""The swap settings of convert that a live session takes too (the rest are about files)."""


def _line(rep: LiveReport) -> str:
    stages = " ".join(f"{k} {v:.1f}" for k, v in rep.stage_ms.items())
    return (
        f"{rep.fps:5.1f} frames/s, dropped {rep.dropped}/{rep.delivered}, "
        f"latency p50 {rep.latency_ms_p50:.0f} ms p95 {rep.latency_ms_p95:.0f} ms; ms/frame: {stages}"
    )


@settings_options(offer(LiveConfig), offer(ConvertConfig, only=LIVE_CONVERT_SETTINGS))
def live(
    model: Annotated[Path, typer.Option("--model", "-m", help="Trained MODEL_DIR, or a DeepFaceLab .dfm.")],
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            help="A camera (0, /dev/video0), a video file, or a stream URL (rtsp://, udp://...).",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="A video file, udp://host:port or tcp://host:port (MPEG-TS), window or virtualcam.",
        ),
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
    log: Annotated[
        Path | None, typer.Option("--log", help="Append each second's figures to this file as JSON lines.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the session's figures as JSON at the end.")
    ] = False,
    *,
    given: Given,
) -> None:
    """Swap faces live, frame by frame as they come; Ctrl-C ends the session and keeps the output."""
    from faceloom.live.session import run_live
    from faceloom.runtime import pin_threads

    settings = given.config(LiveConfig)
    config = given.config(ConvertConfig)
    pin_threads(config.threads)
    if not config.watermark:
        warn("--no-watermark: the output carries only the label, which re-encoding can drop")
    log_file: TextIO | None = log.open("a", encoding="utf-8") if log is not None else None

    def report(rep: LiveReport) -> None:
        if not state.quiet and not as_json:
            typer.echo(_line(rep), err=True)
        if log_file is not None:
            log_file.write(json.dumps(dataclasses.asdict(rep)) + "\n")
            log_file.flush()

    # Ctrl-C asks the session to stop between two frames, so the output is closed cleanly.
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        result = run_live(
            str(model), source, out, config, settings, overwrite=overwrite, cancel=cancel, on_report=report
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        if log_file is not None:
            log_file.close()
    for w in result.warnings:
        warn(w)
    summary = {
        "output": result.output,
        "backend": result.backend,
        "backend_ms": result.backend_ms,
        "detections": result.detections,
        "tracked": result.tracked,
        "tracks": result.tracks,
        "source_fps": round(result.source_fps, 3),
        "interrupted": result.interrupted,
        **dataclasses.asdict(result.total),
    }
    if as_json:
        echo_json(summary)
        return
    ended = "stopped" if result.interrupted else "done"
    echo(
        f"{ended}: {result.total.frames} frame(s) to {result.output} in {result.total.seconds:.1f} s; "
        f"{_line(result.total)}; slowest stage: {result.total.slowest()}"
    )
