"""Text the CLI prints for reports: the coverage analysis and eval's scores (``faceloom run`` prints
the same eval lines). Public, so every command formats a result one way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceloom.evaluation.interval import INTERVAL_LEVEL


def _interval(bounds: list[float] | None) -> str:
    """`` (95%: low..high)`` for a bootstrap interval, nothing for a report written before it."""
    return f" ({INTERVAL_LEVEL:.0%}: {bounds[0]}..{bounds[1]})" if bounds else ""


def _offset(mean: list[float] | None) -> str:
    """``; shared offset yaw/pitch/roll Y/P/R deg`` (swap minus input), nothing for an older report."""
    return "; shared offset yaw/pitch/roll " + "/".join(f"{v:+g}" for v in mean) + " deg" if mean else ""


def _range(summary: dict[str, Any]) -> str:
    return f"{summary['min']}..{summary['max']}" if summary.get("count") else "-"


def analyze_lines(report: dict[str, Any], paths: dict[str, Path]) -> list[str]:
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


def eval_lines(result: dict[str, Any]) -> list[str]:
    m = result["model"]
    lines = [
        f"{m['architecture']} model at step {m['step']} ({m['resolution']} px {m['crop']} crop), "
        f"seed {result['seed']}"
    ]
    for s, r in result["reconstruction"].items():
        h = result["holdout"][s]
        lines.append(
            f"  held-out {s.upper()}: {r['faces']} faces ({h['mode']}); reconstruction SSIM {r['ssim']}, "
            f"PSNR {r['psnr']} dB, detail {r.get('sharpness')} of the real face's (masked to the face)"
        )
    for d, r in result.get("sharpness", {}).items():
        lines.append(
            f"  sharpness {d.replace('_to_', '->').upper()}: swaps hold {r['ratio']} of the wanted person's "
            f"real facial detail ({r['swap_detail']} vs {r['real_detail']}, at the model's resolution); "
            f"2-pixel grid {r['grid_ratio']} of theirs"
        )
    for d, r in result["identity"].items():
        lines.append(
            f"  identity {d.replace('_to_', '->').upper()}: score {r['identity_score']} "
            f"(cos to wanted {r['cos_to_target']}, to source {r['cos_to_source']}; real faces score "
            f"{r.get('reference_score')}), ID retrieval {r['id_retrieval']:.0%} against the other"
            + (f", {r['id_retrieval_all']:.0%} among {r['people']} people" if "people" in r else "")
        )
    for d, r in result["pose_expression"].items():
        if r.get("measured"):
            lines.append(
                f"  pose/expression {d.replace('_to_', '->').upper()}: pose error {r['pose_error_deg']} deg"
                + _interval(r.get("pose_error_interval_deg"))
                + _offset(r.get("pose_offset_deg"))
                + ", "
                f"landmark NME {r['landmark_nme']}, mouth {r['mouth_open_error']}, eyes {r['eye_open_error']}"
                f" ({r['measured']} of {r['faces']} measured)"
            )
        else:
            lines.append(f"  pose/expression {d}: no landmarks found on {r['faces']} swaps")
    v = result.get("video")
    if v:
        lines.append(
            f"  flicker: {v['flicker_swapped']} vs source {v['flicker_source']} "
            f"-> ratio {v['flicker_ratio']}; sharpness {v.get('sharpness_ratio')} of the replaced face's "
            f"detail, {v.get('detail_from_source')} of it kept from the source "
            f"({v['frames']} frames, {v['face_frames']} with a face)"
        )
    return lines
