"""Facesets made by DeepFaceLab (aligned JPEGs, pickled dict in APP15) and faceswap (PNG with an iTXt
header, or bare PNGs beside alignments.fsa), written here from real GRID frames in those tools'
layouts, imported with every face, its landmarks and a head crop where faceloom's own would be."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from faceloom.faces.align import alignment_matrix, transform_points
from faceloom.faces.faceset import Faceset
from tests.dfl_reference import cli, dfl_transform_mat
from tests.media_helpers import read_frames


@pytest.fixture(scope="module")
def g1(g1_faceset: Path) -> Faceset:
    return Faceset.load(g1_faceset)


N_FACES = 8


def _jpeg_with_app15(rgb: np.ndarray, payload: bytes) -> bytes:
    """A JPEG with an APP15 segment after its last APPn segment, where DFLJPG.dump puts it."""
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = enc.tobytes()
    pos = 2
    while data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return data[:pos] + b"\xff\xef" + struct.pack(">H", len(payload) + 2) + payload + data[pos:]


def _png_with_faceswap_header(rgb: np.ndarray, meta: dict[str, Any] | None) -> bytes:
    """A PNG with faceswap's iTXt chunk before the first IDAT (lib/image.py's png_write_meta)."""
    ok, enc = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    png = enc.tobytes()
    if meta is None:
        return png
    chunk = b"iTXt" + b"faceswap\0\0\0\0\0" + str(meta).encode("latin-1", "backslashreplace")
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    split = png.find(b"IDAT") - 4
    return png[:split] + struct.pack(">I", len(chunk) - 4) + chunk + crc + png[split:]


@pytest.fixture(scope="module")
def g1_frames(grid: dict[str, Path], g1: Faceset) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(frame RGB, its 68 landmarks, frame index) of N_FACES frames of GRID g1."""
    frames = read_frames(grid["g1"])
    picks = g1.records[:: max(1, len(g1.records) // N_FACES)][:N_FACES]
    return [(frames[r.frame], r.landmarks_array.astype(np.float64), r.frame) for r in picks]


def make_dfl_aligned(root: Path, faces: list[tuple[np.ndarray, np.ndarray, int]]) -> Path:
    """DFL's data_src/aligned: whole_face JPEGs at 256 px with DFL's pickled dict in APP15."""
    aligned = root / "data_src" / "aligned"
    aligned.mkdir(parents=True)
    for rgb, lm, frame in faces:
        mat = dfl_transform_mat(lm, 256)
        img = cv2.warpAffine(rgb, mat, (256, 256), flags=cv2.INTER_LANCZOS4)
        x0, y0 = lm.min(0)
        x1, y1 = lm.max(0)
        meta = {
            "face_type": "whole_face",
            "landmarks": transform_points(lm, mat).astype(np.float32),
            "eyebrows_expand_mod": 1.0,
            "source_filename": f"{frame + 1:05d}.png",
            "source_rect": (int(x0), int(y0), int(x1), int(y1)),
            "source_landmarks": lm.astype(np.float32),
            "image_to_face_mat": mat.astype(np.float32),
        }
        (aligned / f"{frame + 1:05d}_0.jpg").write_bytes(_jpeg_with_app15(img, pickle.dumps(meta)))
    return aligned


def _faceswap_crop(lm: np.ndarray, size: int, k: int) -> np.ndarray:
    """Some similarity crop around the face (faceswap's own centering is its business)."""
    base = np.vstack([alignment_matrix(lm, size, "head"), [0, 0, 1]])
    turn = np.vstack(
        [cv2.getRotationMatrix2D((size / 2, size / 2), 4.0 * (k % 3 - 1), 1.0 + 0.05 * (k % 2)), [0, 0, 1]]
    )
    return np.asarray((turn @ base)[:2], dtype=np.float64)


def make_faceswap_faces(
    root: Path, faces: list[tuple[np.ndarray, np.ndarray, int]], header: bool
) -> tuple[Path, list[np.ndarray]]:
    """faceswap's faces folder (PNG + iTXt header) or, without header, faces + alignments.fsa."""
    folder = root / "faces"
    folder.mkdir(parents=True)
    truth, frames_fsa = [], {}
    for k, (rgb, lm, frame) in enumerate(faces):
        mat = _faceswap_crop(lm, 256, k)
        truth.append(mat)
        img = cv2.warpAffine(rgb, mat, (256, 256), flags=cv2.INTER_CUBIC)
        x0, y0 = lm.min(0)
        x1, y1 = lm.max(0)
        face = {"x": int(x0), "y": int(y0), "w": int(x1 - x0), "h": int(y1 - y0), "mask": {}, "identity": {}}
        frame_name = f"bbaf2n_{frame + 1:06d}.png"
        meta = {
            "alignments": {**face, "landmarks_xy": lm.tolist()},
            "source": {
                "alignments_version": 2.3,
                "original_filename": f"bbaf2n_{frame + 1:06d}_0.png",
                "face_index": 0,
                "source_filename": frame_name,
                "source_is_video": True,
                "source_frame_dims": tuple(rgb.shape[:2]),
            },
        }
        frames_fsa[frame_name] = {
            "faces": [{**face, "landmarks_xy": lm.astype(np.float32)}],
            "video_meta": {},
        }
        png = _png_with_faceswap_header(img, meta if header else None)
        (folder / f"bbaf2n_{frame + 1:06d}_0.png").write_bytes(png)
    if not header:
        data = {"__meta__": {"version": 2.3}, "__data__": frames_fsa}
        (root / "alignments.fsa").write_bytes(zlib.compress(pickle.dumps(data)))
    return folder, truth


def _check_imported(
    src: Path, layout: str, faces: list[tuple[np.ndarray, np.ndarray, int]], g1: Faceset, min_psnr: float
) -> None:
    """`faceloom faceset import` of ``src`` says it read ``layout`` and skipped nothing; every face
    is there with its frame, its landmarks, and a head crop where faceloom's own extraction of
    that frame puts it: the crop's matrix is the one faceloom's alignment gives
    those landmarks, and its pixels are the frame's under that matrix (masked PSNR, face hull)."""
    from faceloom.train.data import FaceData

    out = src.parent / "imported"
    proc = cli("faceset", "import", src, "--out", out, "--size", "256", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["from"] == layout and summary["faces"] == len(faces) and summary["skipped"] == []
    fs = Faceset.load(out)
    assert fs.crop == "head" and len(fs.records) == len(faces)
    own = {r.frame: r for r in g1.records}
    by_frame = {r.frame: r for r in fs.records}
    assert set(by_frame) == {f for _, _, f in faces}
    for rgb, lm, frame in faces:
        rec = by_frame[frame]
        assert np.abs(rec.landmarks_array - lm).max() < 1e-2
        assert rec.embedding is not None and fs.image_path(rec).is_file()
        # The same frame landmarks land where faceloom's own head crop puts them (scaled to size).
        k = rec.size / own[frame].size
        mine = transform_points(lm, rec.matrix_array)
        theirs = transform_points(lm, own[frame].matrix_array) * k
        assert np.abs(mine - theirs).max() < 0.05, (frame, np.abs(mine - theirs).max())
        crop = cv2.cvtColor(cv2.imread(str(fs.image_path(rec))), cv2.COLOR_BGR2RGB)
        direct = cv2.warpAffine(rgb, rec.matrix_array, (rec.size, rec.size), flags=cv2.INTER_CUBIC)
        from faceloom.faces.masks import hull_mask
        from faceloom.metrics import psnr

        score = psnr(crop, direct, mask=hull_mask(mine, rec.size))
        assert score > min_psnr, (frame, score)
    data = FaceData(fs, [r.id for r in fs.records], crop="whole_face", resolution=64, seed=0)
    assert data.images.shape == (len(faces), data.load_size, data.load_size, 3)


def test_import_a_deepfacelab_aligned_folder(g1: Faceset, g1_frames: list, tmp_path: Path) -> None:
    aligned = make_dfl_aligned(tmp_path, g1_frames)
    # DFL keeps the frame -> image matrix: only resampling and JPEG differ (about 40 dB here).
    _check_imported(aligned, "dfl", g1_frames, g1, min_psnr=37.0)


@pytest.mark.parametrize("header", [True, False], ids=["png_header", "alignments_fsa"])
def test_import_a_faceswap_faces_folder(header: bool, g1: Faceset, g1_frames: list, tmp_path: Path) -> None:
    folder, _ = make_faceswap_faces(tmp_path, g1_frames, header)
    # faceswap keeps frame landmarks only: the image is placed by fitting detected landmarks
    # (36-41 dB here; a fit off by a pixel or two drops below 30).
    _check_imported(folder, "faceswap", g1_frames, g1, min_psnr=33.0)


def test_foreign_files_that_cannot_be_read_say_one_line(g1_frames: list, tmp_path: Path) -> None:
    rgb, lm, _ = g1_frames[0]
    plain = tmp_path / "plain"
    plain.mkdir()
    enc = cv2.imencode(".jpg", rgb)[1]
    (plain / "00001_0.jpg").write_bytes(enc.tobytes())

    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"landmarks": lm, "x": Exploit()})
    (evil / "00001_0.jpg").write_bytes(_jpeg_with_app15(rgb, payload))

    future = tmp_path / "future"
    future.mkdir()
    meta = {"alignments": {"landmarks_xy": lm.tolist()}, "source": {"alignments_version": 9.9}}
    (future / "a_000001_0.png").write_bytes(_png_with_faceswap_header(rgb, meta))

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "a_000001_0.png").write_bytes(_png_with_faceswap_header(rgb, None))

    cases = [
        (plain, "00001_0.jpg", "no APP15"),
        (evil, "00001_0.jpg", "only plain types and numpy arrays"),
        (future, "a_000001_0.png", "version 9.9"),
        (bare, "a_000001_0.png", "alignments.fsa"),
        (tmp_path / "missing", "missing", "not a folder"),
    ]
    for folder, name, words in cases:
        proc = cli("faceset", "import", folder, "--out", tmp_path / f"out_{folder.name}")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (folder, proc.stderr)
        assert len(lines) == 1 and name in lines[0] and words in lines[0], (folder, proc.stderr)
    assert not marker.exists()
    # An existing faceset is never written over.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    proc = cli("faceset", "import", make_dfl_aligned(tmp_path / "d", g1_frames[:1]), "--out", taken)
    assert proc.returncode == 2 and (taken / "keep.txt").read_text() == "mine"
