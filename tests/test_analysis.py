"""`faceloom analyze`: coverage logic on made-up faces, and real mismatches made from the test clips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceloom.analysis.analyze import analyze, analyze_facesets
from faceloom.analysis.attributes import face_table
from faceloom.analysis.coverage import (
    CoverageRule,
    find_mismatches,
    frame_ranges,
    near_duplicates,
    uncovered,
)
from faceloom.config import ExtractConfig
from faceloom.extract import extract
from faceloom.faces.align import MEAN_FACE, alignment_matrix
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.landmarks import expression_measures
from tests.media_helpers import read_frames, write_video


def _face(frame: int, yaw: float, source: str = "clip-000000", pitch: float = 5.0) -> FaceRecord:
    """A made-up face: the mean face 120 px wide in a frame, with the given head angles."""
    lm = (MEAN_FACE * 120.0 + 60.0).astype(np.float32)
    return FaceRecord.create(
        id=f"{source}_{frame:06d}_0",
        file=f"faces/{source}_{frame:06d}_0.jpg",
        source=source,
        frame=frame,
        time=frame / 25.0,
        track=0,
        bbox=(60.0, 60.0, 180.0, 180.0),
        score=1.0,
        landmarks=lm,
        matrix=alignment_matrix(lm, 384),
        size=384,
        pose=(yaw, pitch, 0.0),
        blur=100.0,
        detector="mediapipe",
    )


def _faceloom(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def _warned(report: dict, kind: str = "mismatch") -> list[dict]:
    return [w for w in report["warnings"] if w["kind"] == kind]


def test_made_up_target_turning_beyond_b_names_those_frames() -> None:
    b = [_face(i, yaw) for i, yaw in enumerate(np.linspace(-15.0, 15.0, 61))]
    yaws = np.zeros(80)
    yaws[40:60] = np.linspace(15.0, 50.0, 20)  # frames 46-59 are more than 10 degrees beyond B's 15
    target = [_face(i, float(y), source="target-000000") for i, y in enumerate(yaws)]
    found = find_mismatches(face_table(target), face_table(b), names={"target-000000": "target.mp4"})
    assert [(m["attribute"], m["direction"]) for m in found] == [("yaw", "high")]
    m = found[0]
    assert m["warning"] and m["frames"] == 14 and m["share"] == pytest.approx(14 / 80)
    assert [(r["first"], r["last"], r["file"]) for r in m["ranges"]] == [(46, 59, "target.mp4")]
    assert m["target_extreme"] == 50.0 and m["b_range"] == [-15.0, 15.0]
    assert "turned to their left" in m["advice"] and "+50" in m["advice"]
    # Expression and light of the same mean face match: only pose differs.
    mouths = np.concatenate([face_table(t).values["mouth_open"] for t in (target, b)])
    assert np.ptp(mouths) < 1e-6


def test_mirroring_b_covers_the_other_side_unless_told_not_to() -> None:
    b = [_face(i, yaw) for i, yaw in enumerate(np.linspace(0.0, 35.0, 30))]  # B only turns to their left
    target = [_face(i, -30.0, source="t-000000") for i in range(10)]
    assert find_mismatches(face_table(target), face_table(b)) == []
    found = find_mismatches(face_table(target), face_table(b), mirror_b=False)
    assert [(m["attribute"], m["direction"], m["frames"]) for m in found] == [("yaw", "low", 10)]
    assert "turned to their right" in found[0]["advice"]


def test_rules_ranges_and_duplicates_on_plain_arrays() -> None:
    rule = CoverageRule("face_size", 1.0, scale="log2", side="high")
    flagged, high, _ = uncovered(np.array([50.0, 200.0, 450.0]), np.array([100.0, 200.0]), rule)
    assert flagged.tolist() == [False, False, True] and high[2]  # only over 2x B's largest counts
    gap = CoverageRule("pitch", 10.0)
    flagged, _, dist = uncovered(np.array([0.0, 25.0, np.nan]), np.array([-5.0, 50.0]), gap)
    assert flagged.tolist() == [False, True, False] and dist[1] == pytest.approx(25.0)
    # every 2nd frame sampled: runs join across the sampling step, split at real gaps
    table = face_table([_face(f, 0.0) for f in range(0, 40, 2)])
    rows = np.isin(table.frames, [0, 2, 4, 20, 22])
    assert [(r["first"], r["last"], r["frames"]) for r in frame_ranges(table, rows)] == [
        (0, 4, 3),
        (20, 22, 2),
    ]
    thumbs = np.stack([np.full(16, 100.0), np.full(16, 101.0), np.full(16, 140.0), np.full(16, np.nan)])
    assert near_duplicates(thumbs).tolist() == [False, True, False, False]


def test_darkened_target_video_is_reported(g1_faceset: Path, grid: dict[str, Path], tmp_path: Path) -> None:
    dark = write_video(
        tmp_path / "dark.mp4",
        [(f.astype(np.float32) * 0.5).round().astype(np.uint8) for f in read_frames(grid["g1"])],
    )
    out = tmp_path / "report"
    proc = _faceloom(
        "analyze", "--a", g1_faceset, "--b", g1_faceset, "--target", dark, "--out", out, "--strict", "--json"
    )
    assert proc.returncode == 1, proc.stderr  # --strict: a warning exits 1
    report = json.loads(proc.stdout)
    assert json.loads((out / "coverage.json").read_text())["mismatches"] == report["mismatches"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "darker" in html
    assert set(report) >= {"facesets", "target", "mismatches", "uncovered", "warnings", "advice", "settings"}
    assert report["target"]["kind"] == "video" and (out / "target_faceset" / "faceset.json").exists()
    warned = _warned(report)
    assert [w["attribute"] for w in warned] == ["brightness"], warned
    m = report["mismatches"][0]
    assert m["direction"] == "low" and m["share"] > 0.9 and m["ranges"][0]["file"] == "dark.mp4"
    assert any("darker light" in a for a in report["advice"])
    assert "darker than any face of B" in proc.stderr
    # the same faceset as its own target: exit 0 even with data warnings, no mismatch
    again = _faceloom(
        "-q",
        "analyze",
        "--a",
        g1_faceset,
        "--b",
        g1_faceset,
        "--target",
        g1_faceset,
        "--out",
        tmp_path / "plain",
    )
    assert again.returncode == 0 and "usable faces" in again.stderr and "darker" not in again.stderr


def test_closed_mouth_b_against_speaking_target(pair: tuple[Path, Path]) -> None:
    speaking = Faceset.load(pair[0])  # GRID speaker g3 reading sentences
    mouth = face_table(speaking.records).values["mouth_open"]
    closed = Faceset(
        speaking.root, speaking.header, [r for r, m in zip(speaking.records, mouth, strict=True) if m < 0.05]
    )
    assert 8 <= len(closed.records) < len(speaking.records) // 2
    analysis = analyze_facesets(speaking, closed)
    warned = _warned(analysis.report)
    assert [w["attribute"] for w in warned] == ["mouth_open"], warned
    m = analysis.report["mismatches"][0]
    assert (m["attribute"], m["direction"]) == ("mouth_open", "high")
    expected = mouth > max(mouth[mouth < 0.05]) + 0.08
    assert m["faces"] == int(expected.sum()) and m["share"] > 0.2
    assert analysis.flagged.tolist() == expected.tolist()
    assert "mouth wide open" in m["advice"]


def test_two_facesets_of_the_same_clip_give_no_mismatch(
    g1_faceset: Path, grid: dict[str, Path], tmp_path: Path
) -> None:
    every2 = tmp_path / "g1_every2"
    extract([grid["g1"]], every2, ExtractConfig(every_n=2))
    analysis, paths = analyze(g1_faceset, every2, tmp_path / "report", target=g1_faceset)
    report = analysis.report
    assert _warned(report) == [] and report["uncovered"]["frames"] == 0, report["warnings"]
    assert report["target"]["kind"] == "faceset" and paths["html"].exists()
    cov = report["facesets"]
    assert cov["a"]["faces"] == 75 and cov["b"]["faces"] == 38
    assert 0.0 < cov["a"]["near_duplicates"]["share"] < 1.0 and cov["a"]["usable"] < 75
    yaw = cov["a"]["attributes"]["yaw"]
    assert yaw["min"] <= yaw["median"] <= yaw["max"] and sum(yaw["histogram"]["counts"]) == 75
    assert cov["a"]["attributes"]["brightness"]["count"] == 75


def test_expression_measures_open_mouth_and_closed_eyes() -> None:
    lm = MEAN_FACE.copy()
    neutral = expression_measures(lm)
    lm[65:68, 1] += 0.15  # lower inner lip down
    lm[[37, 38, 43, 44], 1] += 0.02  # upper lids down
    moved = expression_measures(lm)
    assert float(moved["mouth_open"]) > float(neutral["mouth_open"]) + 0.1
    assert float(moved["eye_open"]) < float(neutral["eye_open"])


def test_bad_input_is_one_line_exit_2(g1_faceset: Path, tmp_path: Path) -> None:
    proc = _faceloom("analyze", "--a", tmp_path / "nope", "--b", g1_faceset, "--out", tmp_path / "r")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "nope" in lines[0], proc.stderr
