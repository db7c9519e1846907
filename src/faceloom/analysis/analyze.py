"""`faceloom analyze`: coverage of facesets A and B, and what a target needs that B lacks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from faceloom import __version__
from faceloom.analysis.attributes import ATTRIBUTES, FaceTable, face_table
from faceloom.analysis.coverage import (
    DEFAULT_RULES,
    CoverageRule,
    data_warnings,
    faceset_coverage,
    find_mismatches,
    histogram_edges,
    mismatch_message,
    rules_json,
    uncovered,
)
from faceloom.config import ExtractConfig
from faceloom.errors import InputError
from faceloom.faces.faceset import Faceset
from faceloom.faces.faceset_query import BLURRY_FRACTION, relative_blur
from faceloom.progress import ProgressFn

REPORT_VERSION = 1
TARGET_DIR = "target_faceset"
"""Sub-folder of the report dir that a target video is extracted into (re-runs reuse it)."""
TargetKind = Literal["faceset_a", "faceset", "video"]


@dataclass
class Analysis:
    """The coverage report (``report``, written as coverage.json) and the measures behind it."""

    report: dict[str, Any]
    tables: dict[str, FaceTable]
    """``a``, ``b`` and ``target`` (the same table as ``a`` when no target was given)."""
    flagged: np.ndarray
    """(N,) bool over the target's rows: outside B's coverage in a way that was warned about."""


def _names(fs: Faceset) -> dict[str, str]:
    return {k: Path(e.path).name for k, e in fs.sources.items()}


def _blurry(fs: Faceset) -> np.ndarray:
    ratios = relative_blur(fs) if fs.records else {}
    return np.array([ratios.get(r.id, 1.0) < BLURRY_FRACTION for r in fs.records], dtype=bool)


def _target_info(fs: Faceset, table: FaceTable, kind: TargetKind) -> dict[str, Any]:
    sources = fs.sources
    frames = sum(e.frames for e in sources.values())
    empty = {k: e.empty_frames for k, e in sources.items() if e.empty_frames}
    return {
        "kind": kind,
        "path": str(fs.root),
        "faces": len(table),
        "frames": frames or None,
        "frames_with_faces": len(set(zip(table.sources, table.frames.tolist(), strict=True))),
        "frames_without_faces": sum(b - a + 1 for ranges in empty.values() for a, b in ranges),
        "without_faces_ranges": {Path(sources[k].path).name: v for k, v in empty.items()},
        "sources": [Path(e.path).name for e in sources.values()],
    }


def analyze_facesets(
    fs_a: Faceset,
    fs_b: Faceset,
    fs_target: Faceset | None = None,
    *,
    target_kind: TargetKind | None = None,
    rules: tuple[CoverageRule, ...] = DEFAULT_RULES,
    mirror_b: bool = True,
) -> Analysis:
    """Coverage of A and B and the mismatch of the target (A's own faceset when None) against B.

    Returns an :class:`Analysis` whose ``report`` has the keys ``format``, ``version``,
    ``faceloom_version``, ``created``, ``facesets`` (``a``, ``b``, ``target``: path and
    :func:`~faceloom.analysis.coverage.faceset_coverage`), ``target`` (kind, path, faces, frames,
    frames with / without faces), ``mismatches`` (see
    :func:`~faceloom.analysis.coverage.find_mismatches`), ``uncovered`` (frames and share of the
    target outside B's coverage in any warned way), ``warnings`` (``kind`` data / mismatch,
    ``message``), ``advice`` and ``settings`` (rules, mirror_b, thresholds).
    """
    kind: TargetKind = target_kind or ("faceset_a" if fs_target is None else "faceset")
    t_a = face_table(fs_a.records, fs_a)
    t_b = face_table(fs_b.records, fs_b)
    fs_t = fs_a if fs_target is None else fs_target
    t_t = t_a if fs_target is None else face_table(fs_t.records, fs_t)
    tables = {"a": t_a, "b": t_b, "target": t_t}
    edges = {k: histogram_edges([t.values[k] for t in tables.values()], k) for k in ATTRIBUTES}
    cov = {
        "a": faceset_coverage(t_a, edges, _blurry(fs_a)),
        "b": faceset_coverage(t_b, edges, _blurry(fs_b)),
        "target": faceset_coverage(t_t, edges, _blurry(fs_t)),
    }
    info = _target_info(fs_t, t_t, kind)
    mismatches = find_mismatches(
        t_t, t_b, rules, mirror_b=mirror_b, names=_names(fs_t), video_frames=info["frames"]
    )
    warnings = data_warnings("A", cov["a"]) + data_warnings("B", cov["b"])
    for m in mismatches:
        if m["warning"]:
            warnings.append({"kind": "mismatch", "attribute": m["attribute"], "message": mismatch_message(m)})
    advice: list[str] = []
    for m in mismatches:
        if m["warning"] and m["advice"] not in advice:
            advice.append(m["advice"])
    for w in warnings:
        if w["kind"] == "data" and w["message"] not in advice:
            advice.append(w["message"])
    warned = [m for m in mismatches if m["warning"]]
    flagged_rows = _flagged_rows(
        t_t, t_b, rules, mirror_b, {(m["attribute"], m["direction"]) for m in warned}
    )
    flagged_frames = len(
        set(zip(np.array(t_t.sources)[flagged_rows].tolist(), t_t.frames[flagged_rows].tolist(), strict=True))
    )
    ff = info["frames_with_faces"]
    report: dict[str, Any] = {
        "format": "faceloom-coverage",
        "version": REPORT_VERSION,
        "faceloom_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "facesets": {
            "a": {"path": str(fs_a.root), **cov["a"]},
            "b": {"path": str(fs_b.root), **cov["b"]},
            "target": {"path": str(fs_t.root), **cov["target"]},
        },
        "target": info,
        "mismatches": mismatches,
        "uncovered": {
            "frames": flagged_frames,
            "share": round(flagged_frames / ff, 4) if ff else 0.0,
            "share_of_video": round(flagged_frames / info["frames"], 4) if info["frames"] else None,
        },
        "warnings": warnings,
        "advice": advice,
        "settings": {"rules": rules_json(rules), "mirror_b": mirror_b, "blurry_fraction": BLURRY_FRACTION},
    }
    return Analysis(report=report, tables=tables, flagged=flagged_rows)


def _flagged_rows(
    target: FaceTable,
    b: FaceTable,
    rules: tuple[CoverageRule, ...],
    mirror_b: bool,
    keys: set[tuple[str, str]],
) -> np.ndarray:
    """(N,) bool: target rows in any of the warned (attribute, direction) mismatches."""
    rows = np.zeros(len(target), dtype=bool)
    for rule in rules:
        eff = rule if mirror_b else CoverageRule(rule.attribute, rule.tolerance, rule.scale, rule.side, False)
        flagged, high, _ = uncovered(target.values[rule.attribute], b.values[rule.attribute], eff)
        if (rule.attribute, "high") in keys:
            rows |= flagged & high
        if (rule.attribute, "low") in keys:
            rows |= flagged & ~high
    return rows


def load_target(
    target: str | Path,
    out: Path,
    config: ExtractConfig | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Faceset, TargetKind]:
    """A target faceset folder as is, or a video / images extracted into ``out / TARGET_DIR``."""
    path = Path(target)
    if not path.exists():
        raise InputError("no such target video, image or faceset", path)
    if path.is_dir() and Faceset.is_faceset(path):
        return Faceset.load(path), "faceset"
    from faceloom.extract import extract

    result = extract([path], out / TARGET_DIR, config, progress=progress)
    return Faceset.load(result.faceset), "video"


def analyze(
    a: str | Path,
    b: str | Path,
    out: str | Path,
    target: str | Path | None = None,
    *,
    mirror_b: bool = True,
    extract_config: ExtractConfig | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Analysis, dict[str, Path]]:
    """Analyse facesets A and B (and a target) and write report.html and coverage.json to ``out``.

    Returns the analysis and the written paths (``html``, ``json``).
    """
    from faceloom.analysis.report import write_report
    from faceloom.fsutil import ensure_dir

    out = ensure_dir(out)
    fs_a = Faceset.load(a)
    fs_b = Faceset.load(b)
    fs_t: Faceset | None = None
    kind: TargetKind | None = None
    if target is not None:
        fs_t, kind = load_target(target, out, extract_config, progress)
    analysis = analyze_facesets(fs_a, fs_b, fs_t, target_kind=kind, mirror_b=mirror_b)
    if target is not None:
        analysis.report["target"]["input"] = str(target)
    paths = write_report(analysis, out)
    return analysis, paths
