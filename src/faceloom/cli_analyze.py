"""`faceloom analyze` (data coverage before training) and `faceloom eval` (a model's quality in numbers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from faceloom.cli import app, echo, echo_json, progress_bar, warn
from faceloom.config import DetectorName, DeviceChoice

ProgressFn = Callable[[str, int, int], None]


def _progress() -> tuple[ProgressFn, Callable[[], None]]:
    """A progress callback (label, done, total) with one bar per label, and a closer."""
    bars: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        bar = bars.get(label)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[label] = progress_bar(Path(label).name, total)
        bar.total = max(total, done)
        bar.n = done
        if done % 10 == 0 or done >= total:
            bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def _range(summary: dict[str, Any]) -> str:
    return f"{summary['min']}..{summary['max']}" if summary.get("count") else "-"


def _analyze_text(report: dict[str, Any], paths: dict[str, Path]) -> list[str]:
    lines = []
    t = report["target"]
    for key, name in (("a", "A"), ("b", "B")):
        c = report["facesets"][key]
        at = c["attributes"]
        dup = c["near_duplicates"]["share"]
        lines.append(
            f"{name}: {c['faces']} faces ({c['usable']} usable, {dup:.0%} near-duplicates)"
            f"  yaw {_range(at['yaw'])}  pitch {_range(at['pitch'])}  mouth open {_range(at['mouth_open'])}"
            f"  brightness {_range(at['brightness'])}"
        )
    if t["kind"] == "faceset_a":
        lines.append("target: none given; A's faceset stands in for the video to convert")
    else:
        of = f" of {t['frames']}" if t["frames"] else ""
        lines.append(f"target: {t.get('input', t['path'])}: {t['frames_with_faces']}{of} frames with a face")
    u = report["uncovered"]
    lines.append(f"{u['frames']} target frames ({u['share']:.0%}) fall outside what B's faceset covers")
    warned = {w["message"] for w in report["warnings"]}
    advice = [a for a in report["advice"] if a not in warned]
    if advice:
        lines.append("advice:")
        lines += [f"  - {a}" for a in advice]
    lines.append(f"report: {paths['html']}  data: {paths['json']}")
    return lines


@app.command()
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
    no_flip_b: Annotated[
        bool,
        typer.Option(
            "--no-flip-b", help="B will train without mirroring: a turn to one side does not cover the other."
        ),
    ] = False,
    detector: Annotated[DetectorName, typer.Option(help="Face detector for a target video.")] = "mediapipe",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when there is any warning.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print coverage.json's content.")] = False,
) -> None:
    """Coverage of A and B (pose, expression, light, size, blur, duplicates) and the target frames B lacks."""
    from faceloom.analysis.analyze import analyze as run_analyze
    from faceloom.config import ExtractConfig
    from faceloom.runtime import pin_threads

    pin_threads()
    update, close = _progress()
    try:
        analysis, paths = run_analyze(
            a,
            b,
            out,
            target,
            mirror_b=not no_flip_b,
            extract_config=ExtractConfig(detector=detector),
            progress=update,
        )
    finally:
        close()
    report = analysis.report
    for w in report["warnings"]:
        warn(w["message"])
    if as_json:
        echo_json({**report, "files": {k: str(v) for k, v in paths.items()}})
    else:
        for line in _analyze_text(report, paths):
            echo(line)
    if strict and report["warnings"]:
        raise typer.Exit(1)


def _eval_text(result: dict[str, Any]) -> list[str]:
    m = result["model"]
    lines = [
        f"{m['architecture']} model at step {m['step']} ({m['resolution']} px {m['crop']} crop), "
        f"seed {result['seed']}"
    ]
    for s, r in result["reconstruction"].items():
        h = result["holdout"][s]
        lines.append(
            f"  held-out {s.upper()}: {r['faces']} faces ({h['mode']}); reconstruction SSIM {r['ssim']}, "
            f"PSNR {r['psnr']} dB (masked to the face)"
        )
    for d, r in result["identity"].items():
        lines.append(
            f"  identity {d.replace('_to_', '->').upper()}: score {r['identity_score']} "
            f"(cos to wanted {r['cos_to_target']}, to source {r['cos_to_source']}; real faces score "
            f"{r.get('reference_score')}), ID retrieval {r['id_retrieval']:.0%}"
        )
    for d, r in result["pose_expression"].items():
        if r.get("measured"):
            lines.append(
                f"  pose/expression {d.replace('_to_', '->').upper()}: pose error {r['pose_error_deg']} deg, "
                f"landmark NME {r['landmark_nme']}, mouth {r['mouth_open_error']}, eyes {r['eye_open_error']}"
                f" ({r['measured']} of {r['faces']} measured)"
            )
        else:
            lines.append(f"  pose/expression {d}: no landmarks found on {r['faces']} swaps")
    v = result.get("video")
    if v:
        lines.append(
            f"  flicker: {v['flicker_swapped']} vs source {v['flicker_source']} "
            f"-> ratio {v['flicker_ratio']} "
            f"({v['frames']} frames, {v['face_frames']} with a face)"
        )
    return lines


@app.command("eval")
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
    seed: Annotated[int, typer.Option(help="Seed for sampling faces and torch.")] = 0,
    max_faces: Annotated[int, typer.Option("--max-faces", help="Held-out faces per side at most.")] = 64,
    no_pose: Annotated[bool, typer.Option("--no-pose", help="Skip the pose and expression check.")] = False,
    detector: Annotated[
        DetectorName, typer.Option(help="Landmark detector for pose/expression/flicker.")
    ] = "mediapipe",
    device: Annotated[DeviceChoice, typer.Option()] = "auto",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the JSON to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON.")] = False,
) -> None:
    """Score a model on its held-out faces: SSIM/PSNR, identity, pose and expression; flicker of a video."""
    import json

    from faceloom.analysis.evaluation import EvalConfig, evaluate
    from faceloom.fsutil import atomic_write_text
    from faceloom.runtime import pin_threads

    pin_threads()
    config = EvalConfig(seed=seed, device=device, max_faces=max_faces, detector=detector, pose=not no_pose)
    update, close = _progress()
    try:
        result = evaluate(model, a, b, video=video, source=source, config=config, progress=update)
    finally:
        close()
    for w in result["warnings"]:
        warn(w)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=1))
    if as_json:
        echo_json(result)
        return
    for line in _eval_text(result):
        echo(line)
    if out is not None:
        echo(f"json: {out}")
