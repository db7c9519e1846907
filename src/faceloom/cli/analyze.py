"""`faceloom analyze` (data coverage before training) and `faceloom eval` (a model's quality in numbers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from faceloom.cli.formatting import analyze_lines, eval_lines
from faceloom.cli.options import Given, offer, settings_options
from faceloom.cli.output import echo, echo_json, warn
from faceloom.cli.progress import Bars
from faceloom.config import AnalyzeConfig, EvalConfig, ExtractConfig, TrainConfig


@settings_options(
    offer(
        TrainConfig,
        only=["flip_b"],
        help={"flip_b": "B trains mirrored (--no-flip-b: a turn to one side does not cover the other)."},
    ),
    offer(ExtractConfig, only=["detector"], help={"detector": "Face detector for a target video."}),
    offer(AnalyzeConfig, help={"strict": "Exit 1 when there is any warning."}),
)
def analyze(
    a: Annotated[Path, typer.Option("--a", help="Faceset of person A (the face in the video).")],
    b: Annotated[Path, typer.Option("--b", help="Faceset of person B (the face put in).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.html, coverage.json).")],
    target: Annotated[
        Path | None,
        typer.Option(
            "--target", help="The video to convert (or its faceset); default: A's faceset stands in for it."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print coverage.json's content.")] = False,
    *,
    given: Given,
) -> None:
    """Coverage of A and B (pose, expression, light, size, blur, duplicates) and the target frames B lacks."""
    from faceloom.analysis.analyze import analyze as run_analyze
    from faceloom.runtime import pin_threads

    pin_threads()
    strict = given.config(AnalyzeConfig).strict
    with Bars("frame") as bars:
        analysis, paths = run_analyze(
            a,
            b,
            out,
            target,
            mirror_b=given.config(TrainConfig).flip_b,
            extract_config=given.config(ExtractConfig),
            progress=bars,
        )
    report = analysis.report
    for w in report["warnings"]:
        warn(w["message"])
    if as_json:
        echo_json({**report, "files": {k: str(v) for k, v in paths.items()}})
    else:
        for line in analyze_lines(report, paths):
            echo(line)
    if strict and report["warnings"]:
        raise typer.Exit(1)


@settings_options(offer(EvalConfig))
def eval_model(
    model: Annotated[Path, typer.Option("--model", "-m", help="A model dir made by faceloom train.")],
    a: Annotated[
        Path | None, typer.Option("--a", help="Faceset A (default: the one model.json names).")
    ] = None,
    b: Annotated[
        Path | None, typer.Option("--b", help="Faceset B (default: the one model.json names).")
    ] = None,
    video: Annotated[Path | None, typer.Option("--video", help="A converted (swapped) video.")] = None,
    source: Annotated[Path | None, typer.Option("--source", help="The video --video was made from.")] = None,
    gallery: Annotated[
        list[Path] | None,
        typer.Option("--gallery", help="More people's facesets: identity retrieval counts against them too."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the JSON to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON.")] = False,
    *,
    given: Given,
) -> None:
    """Score a model on its held-out faces: SSIM/PSNR, identity, pose and expression; flicker of a video."""
    from faceloom.evaluation import evaluate
    from faceloom.fsutil import atomic_write_text
    from faceloom.runtime import pin_threads

    pin_threads()
    config = given.config(EvalConfig)
    with Bars("frame") as bars:
        result = evaluate(
            model, a, b, video=video, source=source, config=config, progress=bars, gallery=gallery or []
        )
    for w in result["warnings"]:
        warn(w)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=1))
    if as_json:
        echo_json(result)
        return
    for line in eval_lines(result):
        echo(line)
    if out is not None:
        echo(f"json: {out}")
