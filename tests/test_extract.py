"""Extraction on the real clips: one face per frame, stable landmarks and crops, identity filter,
sideways, dark and rotated-by-metadata video, resume, and bad input."""

from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceloom import fsutil
from faceloom.config import ExtractConfig
from faceloom.errors import FormatError, InputError, OutputError
from faceloom.extract import extract
from faceloom.faces.align import transform_points
from faceloom.faces.detect import create_detector
from faceloom.faces.faceset import Faceset
from faceloom.faces.landmarks import interocular
from tests.media_helpers import read_frames, transformed_clip, write_video


def _rows_by_frame(fs: Faceset, source_stem: str) -> dict[int, list]:
    out: dict[int, list] = {}
    for r in fs.records:
        if r.source.startswith(source_stem):
            out.setdefault(r.frame, []).append(r)
    return out


@pytest.fixture(scope="module")
def all_clips_faceset(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    clips = sorted((data / "crema-d").glob("*.flv")) + sorted((data / "grid").glob("*.mpg"))
    out = tmp_path_factory.mktemp("all") / "fs"
    extract(clips, out)
    return out, clips


def test_every_real_frame_gives_exactly_one_face(all_clips_faceset: tuple[Path, list[Path]]) -> None:
    out, clips = all_clips_faceset
    fs = Faceset.load(out)
    assert len(fs.sources) == len(clips) == 10
    total_frames = 0
    for key, entry in fs.sources.items():
        rows = [r for r in fs.records if r.source == key]
        frames = [r.frame for r in rows]
        assert entry.complete and entry.empty_frames == [], key
        assert entry.frames > 50, key
        assert sorted(frames) == list(range(entry.frames)), f"{key}: not one face in every frame"
        assert len({r.track for r in rows}) == 1, f"{key}: one person should be one track"
        total_frames += entry.frames
    assert total_frames == 379 + 300
    for r in fs.records[::25]:
        img = cv2.imread(str(fs.image_path(r)))
        assert img.shape == (384, 384, 3)
        assert -30 < r.yaw < 30 and -30 < r.pitch < 30 and -15 < r.roll < 15
        assert r.embedding is not None and len(r.embedding) == 128
        assert r.landmarks_full is not None and len(r.landmarks_full) == 478


def test_same_person_embeddings_close_different_far(all_clips_faceset: tuple[Path, list[Path]]) -> None:
    fs = Faceset.load(all_clips_faceset[0])
    emb: dict[str, np.ndarray] = {}
    for r in fs.records:
        assert r.embedding_array is not None
        emb[r.source.split("-")[0]] = r.embedding_array
    crema = [v for k, v in emb.items() if k.startswith("1001")]
    assert all(np.linalg.norm(crema[0] - c) < 0.35 for c in crema[1:])
    g3a, g3b, g1 = emb["id2_vcd_swwp2s"], emb["pwij3p"], emb["bbaf2n"]
    assert np.linalg.norm(g3a - g3b) < 0.45 < np.linalg.norm(g3a - g1)


def test_landmarks_identical_when_extracted_twice(
    grid: dict[str, Path], g1_faceset: Path, tmp_path: Path
) -> None:
    extract([grid["g1"]], tmp_path / "again")
    first, second = Faceset.load(g1_faceset), Faceset.load(tmp_path / "again")
    assert len(first.records) == len(second.records) == 75
    for a, b in zip(first.records, second.records, strict=True):
        assert a.frame == b.frame
        assert a.landmarks == b.landmarks
        assert a.matrix == b.matrix


def test_aligned_crops_put_eyes_and_mouth_in_place(grid: dict[str, Path], tmp_path: Path) -> None:
    """Shake the clip (shift, scale, rotate each frame at random), extract, then find the face
    again in the stored crops: eyes and mouth must sit at the same crop position in every one."""
    rng = np.random.default_rng(7)

    def shake(i: int, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        m = np.asarray(
            cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-15, 15), rng.uniform(0.8, 1.15)),
            dtype=np.float64,
        )
        m[:, 2] += rng.uniform(-30, 30, 2)
        return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)

    clip = transformed_clip(grid["g2"], tmp_path / "shaken.mp4", shake)
    out = tmp_path / "fs"
    extract([clip], out)
    fs = Faceset.load(out)
    assert len(fs.records) >= 71
    detector = create_detector("mediapipe", 1)
    frame_eyes, crop_eyes, crop_mouth = [], [], []
    for r in fs.records:
        frame_eyes.append(r.landmarks_array[36:48].mean(0))
        crop = cv2.cvtColor(cv2.imread(str(fs.image_path(r))), cv2.COLOR_BGR2RGB)
        found = detector.detect(crop)
        assert found, r.id
        lm = found[0].landmarks
        crop_eyes.append(np.r_[lm[36:42].mean(0), lm[42:48].mean(0)])
        crop_mouth.append(lm[48:68].mean(0))
        # the stored matrix maps frame landmarks to where they are seen in the crop
        assert np.abs(transform_points(r.landmarks_array, r.matrix_array)[36:48] - lm[36:48]).mean() < 4.0
    spread_frame = np.array(frame_eyes).std(0).max()
    spread_eyes = np.array(crop_eyes).std(0).max()
    spread_mouth = np.array(crop_mouth).std(0).max()
    # measured: the shaken frames move the eyes ~15 px; in the 384 px crops they stay within ~1-2 px
    assert spread_frame > 8.0
    assert spread_eyes < 0.01 * 384
    assert spread_mouth < 0.015 * 384


def test_identity_filter_keeps_g1_and_drops_g2(grid: dict[str, Path], tmp_path: Path) -> None:
    ref = tmp_path / "g1_ref.jpg"
    Image.fromarray(read_frames(grid["g1"], 40)[-1]).save(ref, quality=92)
    out = tmp_path / "fs"
    result = extract([grid["g1"], grid["g2"]], out, ExtractConfig(identity_refs=(str(ref),)))
    by_name = {r.path.name: r for r in result.sources}
    assert by_name["bbaf2n.mpg"].faces == 75 and by_name["bbaf2n.mpg"].dropped_by_identity == 0
    assert by_name["brbk7n.mpg"].faces == 0 and by_name["brbk7n.mpg"].dropped_by_identity == 75
    fs = Faceset.load(out)
    assert {r.source.split("-")[0] for r in fs.records} == {"bbaf2n"}
    assert len(list((out / "faces").iterdir())) == 75, "dropped faces' images must be deleted"


@pytest.mark.parametrize("detector", ["mediapipe", "dlib"])
def test_sideways_video_gives_upright_faces(grid: dict[str, Path], tmp_path: Path, detector: str) -> None:
    """mediapipe finds faces lying sideways by itself; dlib's HOG does not, and the +-90 degree
    retry finds them. Either way the crops come out upright and the landmarks sit on the face."""
    frames = read_frames(grid["g3"], None if detector == "mediapipe" else 30)
    clip = write_video(tmp_path / "sideways.mp4", [np.rot90(f, k=-1) for f in frames])  # turned clockwise
    out = tmp_path / "fs"
    extract([clip], out, ExtractConfig(detector=detector))  # type: ignore[arg-type]
    fs = Faceset.load(out)
    hit = _rows_by_frame(fs, "sideways")
    assert len(hit) >= 0.95 * len(frames)
    if detector == "dlib":
        assert {r.rotation for rows in hit.values() for r in rows} == {90}
        with pytest.raises(InputError, match="no face found"):
            extract([clip], tmp_path / "no_retry", ExtractConfig(detector="dlib", rotate_retry=False))
    h = frames[0].shape[0]
    for r in fs.records[:10]:
        c = transform_points(r.landmarks_array, r.matrix_array)
        assert c[36:48, 1].mean() < c[48:68, 1].mean() - 50, "eyes above the mouth in the crop"
        assert c[36:42, 0].mean() < c[42:48, 0].mean(), "subject's right eye on the image left"
        assert abs(r.roll - 90) < 20, "the face lies turned clockwise in its frame"
        eye = r.landmarks_array[36:42].mean(0)
        assert 0 < eye[0] < h and eye[1] > 0, "landmarks are in the sideways frame's coordinates"


def test_darkened_video_still_gives_faces(grid: dict[str, Path], tmp_path: Path) -> None:
    clip = transformed_clip(grid["g2"], tmp_path / "dark.mp4", lambda i, f: (f // 2).astype(np.uint8))
    out = tmp_path / "fs"
    result = extract([clip], out)
    assert result.faces >= 0.95 * 75


def test_rotation_metadata_and_exif_are_honoured(grid: dict[str, Path], tmp_path: Path) -> None:
    frames = read_frames(grid["g1"], 10)
    clip = write_video(tmp_path / "phone.mp4", [np.rot90(f, k=-1) for f in frames], display_rotation=90)
    photo = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; viewers rotate 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(frames[0], k=1))).save(photo, exif=exif.tobytes())
    out = tmp_path / "fs"
    extract([clip, photo], out, ExtractConfig(rotate_retry=False))
    fs = Faceset.load(out)
    assert len(fs.records) == 11
    assert all(r.rotation == 0 for r in fs.records)
    for entry in fs.sources.values():
        assert (entry.width, entry.height) == (360, 288)


def test_empty_frames_recorded_and_every_n(grid: dict[str, Path], tmp_path: Path) -> None:
    def blank_middle(i: int, f: np.ndarray) -> np.ndarray:
        return np.full_like(f, 120) if 20 <= i < 30 else f

    clip = transformed_clip(grid["g1"], tmp_path / "gap.mp4", blank_middle)
    out = tmp_path / "fs"
    result = extract([clip], out)
    entry = next(iter(Faceset.load(out).sources.values()))
    assert entry.empty_frames == [[20, 29]]
    assert result.faces == 65
    out5 = tmp_path / "fs5"
    result5 = extract([clip], out5, ExtractConfig(every_n=5))
    assert result5.frames == 15 and result5.faces == 13
    assert sorted(r.frame for r in Faceset.load(out5).records) == [
        i for i in range(0, 75, 5) if not 20 <= i < 30
    ]


def test_rerun_skips_and_failure_keeps_finished_sources(
    grid: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fs"
    extract([grid["g1"]], out)

    def full_disk(path: Path) -> None:
        if path.parent.name == "faces" and path.name.startswith("brbk7n"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "_write_hook", full_disk)
    with pytest.raises(OutputError, match="no space left on device"):
        extract([grid["g1"], grid["g2"]], out)
    monkeypatch.setattr(fsutil, "_write_hook", None)
    fs = Faceset.load(out)
    assert len(fs.records) == 75 and all(fs.image_path(r).exists() for r in fs.records)
    result = extract([grid["g1"], grid["g2"]], out)
    assert [s.skipped for s in result.sources] == [True, False]
    assert len(Faceset.load(out).records) == 150
    again = extract([grid["g1"], grid["g2"]], out)
    assert all(s.skipped for s in again.sources) and again.stats is None
    with pytest.raises(FormatError, match="--size"):
        extract([grid["g1"]], out, ExtractConfig(size=256))


def test_dlib_backend_agrees_with_mediapipe(grid: dict[str, Path], g1_faceset: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "short.mp4", read_frames(grid["g1"], 12))
    out = tmp_path / "fs"
    extract([clip], out, ExtractConfig(detector="dlib"))
    dl = Faceset.load(out).records
    mp = Faceset.load(g1_faceset).records[:12]
    assert len(dl) == 12 and all(r.detector == "dlib" for r in dl)
    errs = [
        np.linalg.norm(a.landmarks_array - b.landmarks_array, axis=1).mean() / interocular(b.landmarks_array)
        for a, b in zip(dl, mp, strict=True)
    ]
    assert float(np.mean(errs)) < 0.08


def test_bad_inputs_raise_clear_errors(grid: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        extract([tmp_path / "missing.mp4"], tmp_path / "o1")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match=r"junk\.mp4"):
        extract([junk], tmp_path / "o2")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    with pytest.raises(InputError, match="not a readable image"):
        extract([text], tmp_path / "o3")
    empty = tmp_path / "no_faces"
    empty.mkdir()
    frame = read_frames(grid["g1"], 1)[0]
    for i in range(3):  # background only: the top-left corner of the GRID frame, scaled up
        Image.fromarray(cv2.resize(frame[:120, :100], (300, 360))).rotate(i * 5).save(empty / f"bg{i}.png")
    with pytest.raises(InputError, match="no face found"):
        extract([empty], tmp_path / "o4")
    assert Faceset.is_faceset(tmp_path / "o4"), "the (empty) faceset is still written"
    with pytest.raises(InputError, match="no images or videos"):
        extract([tmp_path / "o4" / "faces"], tmp_path / "o5")


def test_truncated_video_keeps_frames_before_the_break(grid: dict[str, Path], tmp_path: Path) -> None:
    """A transport stream cut in half (a download that broke off) keeps the frames before the cut."""
    import av

    full = write_video(tmp_path / "full.mp4", read_frames(grid["g2"]))
    stream_copy = tmp_path / "copy.ts"
    with av.open(str(full)) as src, av.open(str(stream_copy), "w", format="mpegts") as dst:
        out_stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            dst.mux(packet)
    cut = tmp_path / "cut.ts"
    data = stream_copy.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    result = extract([cut], tmp_path / "fs")
    kept = result.sources[0]
    assert kept.stopped_early is not None or kept.frames < 75
    assert 20 <= kept.frames < 75
    assert kept.faces == kept.frames
