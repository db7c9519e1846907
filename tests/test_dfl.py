"""The DeepFaceLab ecosystem: DFL's whole_face alignment, `.dfm` export and use, DFL and faceswap
facesets in, on real GRID faces."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from faceloom.faces.align import alignment_matrix, derive_crop, stored_to_crop, transform_points
from faceloom.faces.dfl_template import DFL_TEMPLATE
from faceloom.faces.faceset import Faceset
from tests.media_helpers import read_frames


# ---- DFL's alignment, written again from LandmarksProcessor.get_transform_mat --------------------
def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) similarity src -> dst as DFL's ``umeyama(src, dst, True)``: (3, 3)."""
    n, d = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, t = src - mu_s, dst - mu_d
    cov = t.T @ s / n
    sign = np.ones(d)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    u, sv, vt = np.linalg.svd(cov)
    rot = u @ np.diag(sign) @ vt
    scale = (sv * sign).sum() / s.var(0).sum()
    out = np.eye(3)
    out[:2, :2] = scale * rot
    out[:2, 2] = mu_d - scale * rot @ mu_s
    return out


def dfl_transform_mat(landmarks: np.ndarray, size: int) -> np.ndarray:
    """DFL's get_transform_mat(landmarks, size, FaceType.WHOLE_FACE, scale=1.0)."""
    pts = np.concatenate([landmarks[17:49], landmarks[54:55]])
    mat = _umeyama(pts, np.asarray(DFL_TEMPLATE))
    inv = np.linalg.inv(mat)
    corners = np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)], dtype=np.float64)
    g_p = corners @ inv[:2, :2].T + inv[:2, 2]
    g_c = g_p[4].copy()
    tb = (g_p[2] - g_p[0]) / np.linalg.norm(g_p[2] - g_p[0])
    bt = (g_p[1] - g_p[3]) / np.linalg.norm(g_p[1] - g_p[3])
    padding = 0.40
    mod = np.linalg.norm(g_p[0] - g_p[2]) * (padding * np.sqrt(2.0) + 0.5)
    up = g_p[0] - g_p[3]
    g_c += up / np.linalg.norm(up) * np.linalg.norm(up) * 0.07
    l_t = np.array([g_c - tb * mod, g_c + bt * mod, g_c + tb * mod], dtype=np.float32)
    pts2 = np.array([(0, 0), (size, 0), (size, size)], dtype=np.float32)
    return np.asarray(cv2.getAffineTransform(l_t, pts2), dtype=np.float64)


@pytest.fixture(scope="module")
def g1(g1_faceset: Path) -> Faceset:
    return Faceset.load(g1_faceset)


def test_dfl_whole_face_crop_is_deepfacelabs(g1: Faceset) -> None:
    """faceloom's dfl_whole_face matrix is DFL's get_transform_mat on the same landmarks, and the
    crop cut from the stored head crop is the one cut from the frame."""
    size = 224
    worst_matrix = worst_pixels = 0.0
    for rec in g1.records[::5]:
        frame_lm = rec.landmarks_array.astype(np.float64)
        ours = alignment_matrix(frame_lm, size, "dfl_whole_face")
        ref = dfl_transform_mat(frame_lm, size)
        # Compare where the matrices send the face's own points (pixels of the crop).
        gap = np.abs(transform_points(frame_lm, ours) - transform_points(frame_lm, ref))
        worst_matrix = max(worst_matrix, float(gap.max()))
        in_stored = transform_points(frame_lm, rec.matrix_array)
        via_stored = stored_to_crop("head", rec.size, "dfl_whole_face", size, in_stored)
        composed = via_stored @ np.vstack([rec.matrix_array, [0.0, 0.0, 1.0]])
        worst_pixels = max(
            worst_pixels,
            float(np.abs(transform_points(frame_lm, composed) - transform_points(frame_lm, ref)).max()),
        )
    # float32 corner points in cv2.getAffineTransform are DFL's; 1e-3 px is that rounding.
    assert worst_matrix < 1e-3, worst_matrix
    assert worst_pixels < 1e-3, worst_pixels
    rec = g1.records[0]
    stored = cv2.cvtColor(cv2.imread(str(g1.image_path(rec))), cv2.COLOR_BGR2RGB)
    in_stored = transform_points(rec.landmarks_array, rec.matrix_array)
    crop = derive_crop(stored, "dfl_whole_face", size, landmarks=in_stored)
    assert crop.shape == (size, size, 3)
    # DFL's whole_face puts the eyes a little above the middle and the mouth in the lower half.
    lm = transform_points(in_stored, stored_to_crop("head", rec.size, "dfl_whole_face", size, in_stored))
    assert 0.3 * size < lm[36:48, 1].mean() < 0.5 * size
    assert 0.55 * size < lm[48:68, 1].mean() < 0.8 * size
    with pytest.raises(ValueError, match="landmarks"):
        derive_crop(stored, "dfl_whole_face", size)


# ---- .dfm out and in ------------------------------------------------------------------------------
class DeepFaceLiveDFM:
    """DeepFaceLive's DFMModel (modelhub/DFLive/DFMModel.py) as its behaviour is documented: the
    first input must be named in_face, its H and W are fixed, a second input must be morph_value;
    ``convert`` resizes to the input size, feeds float32 NHWC, and takes the three outputs by
    position as (face mask, celeb face, celeb mask); it returns (celeb, celeb mask, face mask)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = self.sess.get_inputs()
        if not inputs or "in_face" not in inputs[0].name:
            raise ValueError(f"Invalid model {path}")
        self.height, self.width = inputs[0].shape[1:3]
        self.model_type = 1
        if len(inputs) == 2:
            if "morph_value" not in inputs[1].name:
                raise ValueError(f"Invalid model {path}")
            self.model_type = 2
        elif len(inputs) > 2:
            raise ValueError(f"Invalid model {path}")

    def convert(self, img: np.ndarray, morph_factor: float = 0.75) -> tuple[np.ndarray, ...]:
        """img: NHWC BGR, uint8 or float32 in [0, 1]."""
        h, w = img.shape[1:3]
        x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        if (h, w) != (self.height, self.width):
            x = np.stack([cv2.resize(i, (self.width, self.height)) for i in x])
        feed = {"in_face:0": x}
        if self.model_type == 2:
            feed["morph_value:0"] = np.array([morph_factor], dtype=np.float32)
        out_face_mask, out_celeb, out_celeb_mask = self.sess.run(None, feed)
        return out_celeb, out_celeb_mask, out_face_mask


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def dfl_lite(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small lite model trained on DFL's whole_face crop (no learned mask)."""
    from faceloom.train.trainer import train
    from tests.conftest import lite_config

    out = tmp_path_factory.mktemp("dfl") / "lite_dfl"
    train(
        pair[0],
        pair[1],
        out,
        lite_config(iterations=60, crop="dfl_whole_face", eval_every=0, preview_every=0),
    )
    return out


@pytest.fixture(scope="module")
def dfl_loom(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loom (learned masks) on DFL's crop, two steps: enough for the graph, not for looks."""
    from faceloom.config import TrainConfig
    from faceloom.train.trainer import train

    out = tmp_path_factory.mktemp("dfl") / "loom_dfl"
    config = TrainConfig(
        model="loom", crop="dfl_whole_face", iterations=2, batch_size=2, eval_every=0, preview_every=0
    )
    train(pair[0], pair[1], out, config)
    return out


@pytest.mark.parametrize("which", ["dfl_lite", "dfl_loom"])
def test_dfm_export_runs_in_deepfacelive_as_in_faceloom(
    which: str, request: pytest.FixtureRequest, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    from faceloom.evaluation.crops import model_inputs
    from faceloom.train.export import mean_face_mask
    from faceloom.train.models.factory import load_model

    model_dir: Path = request.getfixturevalue(which)
    dfm = tmp_path / "swap.dfm"
    proc = _cli("export", model_dir, "--dfm", dfm, "--to", "b", "--json")
    assert proc.returncode == 0, proc.stderr
    model, _ = load_model(model_dir)
    assert model.crop == "dfl_whole_face"
    res = model.resolution
    fs = Faceset.load(pair[0])
    faces = model_inputs(fs, fs.records[-6:], "dfl_whole_face", res)  # RGB uint8, aligned DFL's way

    live = DeepFaceLiveDFM(dfm)
    assert (live.height, live.width, live.model_type) == (res, res, 1)
    celeb, celeb_mask, face_mask = live.convert(np.ascontiguousarray(faces[..., ::-1]))
    assert celeb.shape == (6, res, res, 3) and celeb.dtype == np.float32
    assert celeb_mask.shape == face_mask.shape == (6, res, res, 1)

    with torch.no_grad():
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
        z = model.encode(x)
        rgb, mask_b = model.decode(z, "b")
        _, mask_a = model.decode(z, "a")
    want = rgb.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(celeb[..., ::-1] - want).max() < 1e-3
    if model.has_mask:
        assert mask_a is not None and mask_b is not None
        assert np.abs(celeb_mask[..., 0] - mask_b[:, 0].numpy()).max() < 1e-3
        assert np.abs(face_mask[..., 0] - mask_a[:, 0].numpy()).max() < 1e-3
    else:
        hull = mean_face_mask("dfl_whole_face", res)
        assert np.abs(celeb_mask[..., 0] - hull).max() < 1e-6
        assert np.abs(face_mask[..., 0] - hull).max() < 1e-6
        assert 0.2 < hull.mean() < 0.6  # the face, not the whole square nor nothing

    meta = onnx_meta(dfm)
    assert meta["faceloom_crop"] == "dfl_whole_face" and meta["faceloom_to"] == "b"
    assert int(meta["faceloom_step"]) > 0


def onnx_meta(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_convert_with_a_dfm_keeps_frames_audio_and_watermark(
    grid: dict[str, Path], dfl_lite: Path, tmp_path: Path
) -> None:
    from faceloom.media.credentials import read_credentials
    from tests.test_convert import audio_seconds

    dfm = tmp_path / "lite.dfm"
    assert _cli("export", dfl_lite, "--dfm", dfm).returncode == 0
    out = tmp_path / "swapped.mp4"
    proc = _cli("convert", grid["g3b"], "--model", dfm, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == summary["faces_swapped"] == len(read_frames(grid["g3b"])) == 75
    assert audio_seconds(out) == pytest.approx(audio_seconds(grid["g3b"]), abs=0.05)
    verify = _cli("verify", out, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = read_credentials(out)
    assert report is not None and report.valid and report.synthetic
    assert report.model is not None and report.model["format"] == "DeepFaceLab .dfm"
    # The face changed where the .dfm put it; frames far from it did not.
    before, after = read_frames(grid["g3b"], 1)[0], read_frames(out, 1)[0]
    assert np.abs(before.astype(np.float32) - after.astype(np.float32)).max() > 40


def test_bad_dfm_and_export_inputs_say_one_line(
    grid: dict[str, Path], dfl_lite: Path, trained_lite: Path, tmp_path: Path
) -> None:
    onnx_file = tmp_path / "plain.onnx"
    assert _cli("export", dfl_lite, "--onnx", onnx_file).returncode == 0
    junk = tmp_path / "junk.dfm"
    junk.write_bytes(b"not a model at all")
    cases = [
        (("convert", grid["g3b"], "--model", onnx_file, "--out", tmp_path / "a.mp4"), "in_face"),
        (("convert", grid["g3b"], "--model", junk, "--out", tmp_path / "b.mp4"), "not an ONNX model"),
        (("export", trained_lite, "--dfm", tmp_path / "c.dfm"), "--crop dfl_whole_face"),
        (("export", trained_lite), "--dfm"),
    ]
    for args, words in cases:
        proc = _cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(lines) == 1 and words in lines[0], (args, proc.stderr)
    assert not (tmp_path / "c.dfm").exists()


# ---- facesets of DeepFaceLab and faceswap in -------------------------------------------------------
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
    out: Path, faces: list[tuple[np.ndarray, np.ndarray, int]], g1: Faceset, min_psnr: float
) -> None:
    """Every face is there with its frame, its landmarks, and a head crop where faceloom's own
    extraction of that frame puts it: the crop's matrix is the one faceloom's alignment gives
    those landmarks, and its pixels are the frame's under that matrix (masked PSNR, face hull)."""
    from faceloom.train.data import FaceData

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
    out = tmp_path / "imported"
    proc = _cli("faceset", "import", aligned, "--out", out, "--size", "256", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["from"] == "dfl" and summary["faces"] == N_FACES and summary["skipped"] == []
    # DFL keeps the frame -> image matrix: only resampling and JPEG differ (about 40 dB here).
    _check_imported(out, g1_frames, g1, min_psnr=37.0)


@pytest.mark.parametrize("header", [True, False], ids=["png_header", "alignments_fsa"])
def test_import_a_faceswap_faces_folder(header: bool, g1: Faceset, g1_frames: list, tmp_path: Path) -> None:
    folder, _ = make_faceswap_faces(tmp_path, g1_frames, header)
    out = tmp_path / "imported"
    proc = _cli("faceset", "import", folder, "--out", out, "--size", "256", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["from"] == "faceswap" and summary["faces"] == N_FACES and summary["skipped"] == []
    # faceswap keeps frame landmarks only: the image is placed by fitting detected landmarks
    # (36-41 dB here; a fit off by a pixel or two drops below 30).
    _check_imported(out, g1_frames, g1, min_psnr=33.0)


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
        proc = _cli("faceset", "import", folder, "--out", tmp_path / f"out_{folder.name}")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (folder, proc.stderr)
        assert len(lines) == 1 and name in lines[0] and words in lines[0], (folder, proc.stderr)
    assert not marker.exists()
    # An existing faceset is never written over.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    proc = _cli("faceset", "import", make_dfl_aligned(tmp_path / "d", g1_frames[:1]), "--out", taken)
    assert proc.returncode == 2 and (taken / "keep.txt").read_text() == "mine"
