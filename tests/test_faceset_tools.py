"""Faceset tools (info, sort, remove, preview), landmark masks and the `faceloom faceset` commands, on
GRID speaker g1 (75 frames, one face each)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from faceloom.errors import InputError
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.faceset_edit import remove_faces, sort_faceset
from faceloom.faces.faceset_preview import CAPTION_H, HEADER_H, preview_sheet, sheet_size
from faceloom.faces.faceset_query import BLURRY_FRACTION, crop_landmarks, faceset_info, short_id
from faceloom.faces.landmarks import LEFT_EYE, MOUTH, RIGHT_BROW, RIGHT_EYE
from faceloom.faces.masks import hull_mask, region_weights
from faceloom.faces.quality import blur_score


@pytest.fixture
def g1(g1_faceset: Path, tmp_path: Path) -> Path:
    """A private copy of the session's g1 faceset, safe to mutate."""
    dst = tmp_path / "g1"
    shutil.copytree(g1_faceset, dst)
    return dst


def image_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "faces").iterdir() if not p.name.startswith("."))


def assert_consistent(root: Path) -> Faceset:
    """Every row's image exists and decodes, and the folder holds exactly the table's images."""
    fs = Faceset.load(root)
    for r in fs.records:
        img = cv2.imread(str(fs.image_path(r)))
        assert img is not None, r.file
        assert img.shape == (fs.size, fs.size, 3)
    assert image_names(root) == sorted(PurePosixPath(r.file).name for r in fs.records)
    return fs


# ---- info ---------------------------------------------------------------------------------------
def test_info_counts_match_table(g1: Path) -> None:
    fs = Faceset.load(g1)
    info = faceset_info(fs)
    c = info["counts"]
    assert c["faces"] == len(fs.records) == 75
    assert c["sources"] == 1 and len(info["sources"]) == 1
    assert c["frames"] == 75 and c["frames_without_faces"] == 0 and c["frames_with_faces"] == 75
    assert c["tracks"] == len({r.track for r in fs.records})
    src = info["sources"][0]
    assert src["faces"] == 75 and src["kind"] == "video" and src["path"].endswith("bbaf2n.mpg")
    assert info["crop"] == {"type": "head", "size": fs.size, "format": "jpg"}
    for angle in ("yaw", "pitch"):
        values = [getattr(r, angle) for r in fs.records]
        summary = info[angle]
        assert summary["min"] == pytest.approx(min(values), abs=0.01)
        assert summary["max"] == pytest.approx(max(values), abs=0.01)
        assert sum(b["count"] for b in summary["bins"]) == 75
        for b in summary["bins"]:
            assert b["to"] - b["from"] == 15
            assert b["count"] == sum(b["from"] <= v < b["to"] for v in values)
    assert info["blur"]["min"] == pytest.approx(min(r.blur for r in fs.records), abs=0.01)
    assert info["blur"]["blurry"] == 0  # no face of the real clip is blurred
    assert info["face_size"]["max"] == pytest.approx(max(r.face_size for r in fs.records), abs=0.1)
    assert info["missing_images"] == [] and info["unreferenced_images"] == []

    gone = fs.records[5]
    fs.image_path(gone).unlink()
    assert faceset_info(Faceset.load(g1))["missing_images"] == [gone.id]


# ---- sort ---------------------------------------------------------------------------------------
def test_sort_by_yaw_orders_rows_and_files(g1: Path) -> None:
    ids_before = {r.id for r in Faceset.load(g1).records}
    rows = sort_faceset(Faceset.load(g1), "yaw")
    yaws = [r.yaw for r in rows]
    assert yaws == sorted(yaws)
    assert yaws != [r.yaw for r in sorted(rows, key=lambda r: r.frame)]  # the order really changed

    fs = assert_consistent(g1)
    assert [r.id for r in fs.records] == [r.id for r in rows]  # saved in the new order
    assert {r.id for r in fs.records} == ids_before  # ids are stable
    # A file browser's name order is the table order, and each name is <order>_<id>.
    assert image_names(g1) == [PurePosixPath(r.file).name for r in fs.records]
    for n, r in enumerate(fs.records):
        assert PurePosixPath(r.file).name == f"{n:05d}_{r.id}.jpg"


def test_sort_twice_is_stable_and_resort_replaces_prefix(g1: Path) -> None:
    first = [(r.id, r.file) for r in sort_faceset(Faceset.load(g1), "yaw")]
    again = [(r.id, r.file) for r in sort_faceset(Faceset.load(g1), "yaw")]
    assert again == first

    rows = sort_faceset(Faceset.load(g1), "blur")
    blurs = [r.blur for r in rows]
    assert blurs == sorted(blurs, reverse=True)  # sharpest first
    fs = assert_consistent(g1)
    for n, r in enumerate(fs.records):
        assert PurePosixPath(r.file).name == f"{n:05d}_{r.id}.jpg"  # one prefix, not two


def test_sort_by_size_and_similarity(g1: Path) -> None:
    rows = sort_faceset(Faceset.load(g1), "size")
    sizes = [r.face_size for r in rows]
    assert sizes == sorted(sizes, reverse=True)

    # Give one row an outlying embedding and drop another's: the outlier goes last among rows with an
    # embedding, the row without one goes to the very end.
    fs = Faceset.load(g1)
    assert all(r.embedding is not None for r in fs.records)
    odd, none = fs.records[0], fs.records[1]
    assert odd.embedding is not None
    odd.embedding = [v + 0.3 for v in odd.embedding]
    none.embedding = None
    fs.save()
    rows = sort_faceset(Faceset.load(g1), "similarity")
    assert rows[-1].id == none.id and rows[-2].id == odd.id
    assert_consistent(g1)


def test_interrupted_sort_loses_nothing(g1: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = [(r.id, r.file) for r in Faceset.load(g1).records]

    # Killed (here: failing) when saving the table: the old table still names existing files and the
    # new names made so far are rolled back.
    def broken_save(self: Faceset) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(Faceset, "save", broken_save)
        with pytest.raises(OSError):
            sort_faceset(Faceset.load(g1), "yaw")
    fs = assert_consistent(g1)
    assert [(r.id, r.file) for r in fs.records] == before

    # Killed after the table was saved but before the old names were unlinked: the table is
    # consistent, info reports the extra names, and the next sort removes them.
    rows = sort_faceset(fs, "yaw")
    old_names = dict(before)
    for r in rows:
        os.link(g1 / r.file, g1 / old_names[r.id])
    fs = Faceset.load(g1)
    assert all(fs.image_path(r).is_file() for r in fs.records)
    assert len(faceset_info(fs)["unreferenced_images"]) == 75
    sort_faceset(fs, "yaw")
    assert_consistent(g1)


# ---- remove -------------------------------------------------------------------------------------
def test_remove_by_ids(g1: Path) -> None:
    sort_faceset(Faceset.load(g1), "yaw")  # names carry an order prefix, as after a real sort
    fs = Faceset.load(g1)
    a, b, c = fs.records[3], fs.records[10], fs.records[40]
    # full id, short id as shown in the preview, file name as shown in a file browser
    removed = remove_faces(fs, ids=[a.id, short_id(b), PurePosixPath(c.file).name])
    assert sorted(r.id for r in removed) == sorted([a.id, b.id, c.id])
    fs = assert_consistent(g1)
    assert len(fs.records) == 72
    assert not {a.id, b.id, c.id} & {r.id for r in fs.records}
    for r in (a, b, c):
        assert not (g1 / r.file).exists()


def test_remove_unknown_id_removes_nothing(g1: Path) -> None:
    fs = Faceset.load(g1)
    keep = fs.records[0].id
    with pytest.raises(InputError, match="no-such-face") as err:
        remove_faces(fs, ids=[keep, "no-such-face"])
    assert keep not in str(err.value)
    assert len(assert_consistent(g1).records) == 75


def test_remove_missing_drops_hand_deleted_images(g1: Path) -> None:
    sort_faceset(Faceset.load(g1), "pitch")
    fs = Faceset.load(g1)
    deleted = [fs.records[0], fs.records[17]]
    for r in deleted:  # the user deletes two faces in a file browser
        fs.image_path(r).unlink()
    removed = remove_faces(Faceset.load(g1), missing=True)
    assert [r.id for r in removed] == [r.id for r in deleted]
    fs = assert_consistent(g1)
    assert len(fs.records) == 73


def test_remove_blurry_below_threshold(g1: Path) -> None:
    fs = Faceset.load(g1)
    threshold = float(np.median([r.blur for r in fs.records]))
    expected = {r.id for r in fs.records if r.blur < threshold}
    assert 0 < len(expected) < 75
    removed = remove_faces(fs, blurry_below=threshold)
    assert {r.id for r in removed} == expected
    fs = assert_consistent(g1)
    assert all(r.blur >= threshold for r in fs.records)
    assert len(fs.records) == 75 - len(expected)


def test_default_blurry_rule_catches_a_blurred_face_only(g1: Path) -> None:
    # Nothing in the real clip is blurred: the default relative rule keeps every face.
    assert remove_faces(Faceset.load(g1), blurry_relative=BLURRY_FRACTION) == []
    # Blur one crop (Gaussian, 1.5 px) and score it as extraction would: the default rule removes it.
    fs = Faceset.load(g1)
    victim = fs.records[20]
    path = fs.image_path(victim)
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    blurred = cv2.GaussianBlur(rgb, (0, 0), 1.5)
    cv2.imwrite(str(path), cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR))
    victim.blur = round(blur_score(blurred), 2)
    fs.save()
    removed = remove_faces(Faceset.load(g1), blurry_relative=BLURRY_FRACTION)
    assert [r.id for r in removed] == [victim.id]
    assert len(assert_consistent(g1).records) == 74


# ---- preview ------------------------------------------------------------------------------------
def test_preview_sheet_draws_landmarks_and_mask(g1: Path, tmp_path: Path) -> None:
    fs = Faceset.load(g1)
    out = preview_sheet(fs, tmp_path / "sheets" / "grid.png")
    plain = preview_sheet(fs, tmp_path / "plain.png", draw_landmarks=False, draw_mask=False)
    assert out == tmp_path / "sheets" / "grid.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sheet = cv2.imread(str(out))
    base = cv2.imread(str(plain))
    # 75 faces, 64 shown in 8 columns of 160 px tiles with a caption strip, under a legend strip
    assert sheet_size(75) == (8 * 160, HEADER_H + 8 * (160 + CAPTION_H))
    assert sheet.shape == base.shape == (HEADER_H + 8 * (160 + CAPTION_H), 8 * 160, 3)
    step = 160 + CAPTION_H
    for row in range(8):
        for col in range(8):
            y = HEADER_H + row * step
            a = sheet[y : y + 160, col * 160 : (col + 1) * 160].astype(int)
            b = base[y : y + 160, col * 160 : (col + 1) * 160].astype(int)
            assert a.std() > 10  # a real face, not an empty tile
            changed = (np.abs(a - b).max(axis=2) > 40).mean()
            assert 0.02 < changed < 0.4, (row, col, changed)  # outlines drawn over a still visible face
            # captions are there and identical in both sheets
            cap_a = sheet[y + 160 : y + step, col * 160 : (col + 1) * 160]
            cap_b = base[y + 160 : y + step, col * 160 : (col + 1) * 160]
            assert cap_a.max() > 150 and np.array_equal(cap_a, cap_b)

    few = preview_sheet(fs, tmp_path / "few.png", columns=4, max_faces=6, tile=96)
    assert cv2.imread(str(few)).shape == (HEADER_H + 2 * (96 + CAPTION_H), 4 * 96, 3)


# ---- masks --------------------------------------------------------------------------------------
def _crop_points(g1: Path) -> tuple[FaceRecord, np.ndarray]:
    r = Faceset.load(g1).records[30]
    return r, crop_landmarks(r).astype(np.float64)


def test_hull_mask_covers_face_not_corners(g1: Path) -> None:
    r, pts = _crop_points(g1)
    mask = hull_mask(pts, r.size)
    assert mask.shape == (r.size, r.size) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    cx, cy = np.round(pts.mean(axis=0)).astype(int)
    assert mask[cy, cx] == 1.0
    s = r.size - 1
    assert mask[0, 0] == mask[0, s] == mask[s, 0] == mask[s, s] == 0.0
    # every landmark is inside or on the hull, and the forehead above the brows is covered
    inside = [mask[round(y), round(x)] for x, y in pts]
    assert min(inside) > 0.0
    brow = pts[RIGHT_BROW].mean(axis=0)
    eye = pts[RIGHT_EYE].mean(axis=0)
    above = np.round(brow + 0.3 * (brow - eye)).astype(int)
    assert mask[above[1], above[0]] == 1.0
    # the face covers a plausible share of the head crop
    assert 0.08 < float(mask.mean()) < 0.5

    soft = hull_mask(pts, r.size, blur=6)
    assert soft.shape == mask.shape and soft.min() >= 0.0 and soft.max() <= 1.0
    assert soft[cy, cx] == pytest.approx(1.0, abs=1e-3)
    edge = (mask > 0) & (mask < 1)
    assert ((soft > 0.02) & (soft < 0.98)).sum() > 4 * edge.sum()  # feathered, not a hard edge


def test_region_weights_emphasise_eyes_and_mouth(g1: Path) -> None:
    r, pts = _crop_points(g1)
    w = region_weights(pts, r.size, eye_weight=3.0, mouth_weight=2.0)
    assert w.shape == (r.size, r.size) and w.dtype == np.float32

    def at(p: np.ndarray) -> float:
        x, y = np.round(p).astype(int)
        return float(w[y, x])

    assert at(pts[RIGHT_EYE].mean(axis=0)) == 3.0
    assert at(pts[LEFT_EYE].mean(axis=0)) == 3.0
    assert at(pts[MOUTH].mean(axis=0)) == 2.0
    assert at(pts[30]) == 1.0  # nose tip: plain face
    assert w[0, 0] == 0.0 and w[-1, -1] == 0.0
    assert set(np.unique(w).tolist()) == {0.0, 1.0, 2.0, 3.0}
    # the weighted regions lie on the face mask
    assert np.all(hull_mask(pts, r.size)[w > 0] > 0)


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_info_json(g1: Path) -> None:
    from faceloom.cli import app

    result = CliRunner().invoke(app, ["faceset", "info", str(g1), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["counts"]["faces"] == 75 and info["counts"]["sources"] == 1
    assert info["counts"]["frames_without_faces"] == 0


def _faceloom(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("faceloom")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from faceloom.cli import main; main()"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_cli_unknown_id_is_one_line_exit_2(g1: Path) -> None:
    proc = _faceloom("faceset", "remove", str(g1), "--faces", "not-a-face-id")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not-a-face-id" in lines[0] and lines[0].startswith("error:")
    assert len(Faceset.load(g1).records) == 75

    proc = _faceloom("faceset", "info", str(g1.parent / "nowhere"))
    assert proc.returncode == 2 and "no such faceset folder" in proc.stderr


def test_cli_sort_remove_preview(g1: Path, tmp_path: Path) -> None:
    from faceloom.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["faceset", "sort", str(g1), "--by", "yaw"])
    assert result.exit_code == 0 and "sorted 75 faces by yaw" in result.stdout
    fs = Faceset.load(g1)
    victim = fs.records[0]
    result = runner.invoke(app, ["faceset", "remove", str(g1), "--faces", short_id(victim), "--dry-run"])
    assert result.exit_code == 0 and "would remove 1" in result.stdout
    assert len(Faceset.load(g1).records) == 75
    result = runner.invoke(app, ["faceset", "remove", str(g1), "--faces", short_id(victim), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"dry_run": False, "removed": [victim.id], "remaining": 74}
    out = tmp_path / "p.png"
    result = runner.invoke(app, ["faceset", "preview", str(g1), "--out", str(out), "--max-faces", "16"])
    assert result.exit_code == 0 and out.is_file()
    assert cv2.imread(str(out)).shape == (HEADER_H + 2 * (160 + CAPTION_H), 8 * 160, 3)
    assert re.search(r"16 of 74 faces", result.stdout)
