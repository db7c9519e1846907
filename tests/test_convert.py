"""Convert on real clips with the session's small model: same length, fps and audio as the input,
pixels away from the face untouched, the face changed, the output marked, only person A swapped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from faceloom.config import ConvertConfig
from faceloom.convert.pipeline import convert, convert_preview
from faceloom.errors import InputError, OutputError
from faceloom.faces.detect import create_detector
from faceloom.media.reader import probe_video, read_image
from faceloom.media.writer import read_label
from faceloom.metrics import psnr
from tests.media_helpers import read_frames, write_video


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def audio_seconds(path: Path) -> float:
    """Duration of the decoded audio: samples / rate."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / float(stream.rate)


def face_boxes(frames: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
    detector = create_detector("mediapipe")
    try:
        boxes = []
        for f in frames:
            faces = detector.detect(np.ascontiguousarray(f))
            x0, y0, x1, y1 = faces[0].bbox
            boxes.append((int(x0), int(y0), int(x1), int(y1)))
        return boxes
    finally:
        detector.close()


@pytest.fixture(scope="module")
def converted(grid: dict[str, Path], trained_lite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "g3b_swapped.mp4"
    result = convert(grid["g3b"], trained_lite, out)
    assert result.faces_swapped == result.frames == len(read_frames(grid["g3b"]))
    assert result.stats is not None and set(result.stats.shares()) == {
        "decode",
        "detect+align",
        "predict",
        "blend",
    }
    return out


def test_video_keeps_length_fps_and_audio(grid: dict[str, Path], converted: Path) -> None:
    src, out = probe_video(grid["g3b"]), probe_video(converted)
    assert len(read_frames(converted)) == len(read_frames(grid["g3b"])) == 75
    assert out.fps == pytest.approx(src.fps)
    assert (out.width, out.height) == (src.width, src.height)
    assert out.has_audio
    assert audio_seconds(converted) == pytest.approx(audio_seconds(grid["g3b"]), abs=0.05)
    label = read_label(converted)
    assert label is not None and label.get("synthetic") == "1"


def test_the_output_carries_valid_content_credentials(converted: Path, trained_lite: Path) -> None:
    from faceloom.media.credentials import read_credentials

    report = read_credentials(converted)
    assert report is not None and report.valid and report.synthetic and report.local, report
    assert report.model is not None and report.model["architecture"] == "lite"
    assert report.model["training_steps"] > 0 and str(trained_lite) not in json.dumps(report.to_dict())


def test_face_changes_and_background_does_not(grid: dict[str, Path], converted: Path) -> None:
    before = read_frames(grid["g3b"])
    after = read_frames(converted)
    boxes = face_boxes(before[::15])
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        a = before[k * 15].astype(np.float32)
        b = after[k * 15].astype(np.float32)
        h, w = a.shape[:2]
        m = (x1 - x0) // 2 + 10  # well clear of the face and the feathered mask
        far = np.ones((h, w), bool)
        far[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m] = False
        assert far.mean() > 0.3
        # codec noise (crf 18 re-encode of an MPEG-1 source) plus the watermark's bound
        assert psnr(before[k * 15], after[k * 15], mask=far.astype(np.float32)) > 36.0
        inner = (
            slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 8),
            slice(x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5),
        )
        assert np.abs(a[inner] - b[inner]).mean() > 4.0, "the face was not replaced"


def test_verify_finds_the_mark_after_reencode(grid: dict[str, Path], converted: Path, tmp_path: Path) -> None:
    frames = read_frames(converted)
    half = [f[::2, ::2] for f in frames]
    reencoded = write_video(tmp_path / "reencoded.mp4", half, crf=23)
    for path, code in ((converted, 0), (reencoded, 0), (grid["g3b"], 1)):
        proc = run("verify", path, "--json")
        assert proc.returncode == code, (path, proc.stdout, proc.stderr)


def test_side_by_side_trim_and_scale(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    out = tmp_path / "sbs.mkv"
    cfg = ConvertConfig(side_by_side=True, start=0.4, end=1.6)
    result = convert(grid["g3b"], trained_lite, out, cfg)
    src, info = probe_video(grid["g3b"]), probe_video(out)
    assert info.width == 2 * src.width and info.height == src.height
    assert len(read_frames(out)) == result.frames == round(1.2 * src.fps)
    assert audio_seconds(out) == pytest.approx(1.2, abs=0.06)
    left = read_frames(out, limit=1)[0][:, : src.width]
    original = read_frames(grid["g3b"])[round(0.4 * src.fps)]
    assert psnr(original, left) > 32  # the left half is the untouched source frame
    small = convert(grid["g3b"], trained_lite, tmp_path / "small.mp4", ConvertConfig(scale=0.5, end=0.4))
    assert probe_video(small.output).width == src.width // 2


def test_only_person_a_is_swapped(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    """A frame with A (GRID g3) on the left and a stranger (GRID g1) on the right: only A changes."""
    a = read_frames(grid["g3b"], limit=1)[0]
    other = read_frames(grid["g1"], limit=1)[0]
    both = np.hstack([a, other])
    (tmp_path / "in").mkdir()
    from faceloom.media.writer import write_image

    write_image(tmp_path / "in" / "two.png", both, synthetic=False)
    result = convert(tmp_path / "in", trained_lite, tmp_path / "out")
    assert result.faces_swapped == 1 and result.faces_left_alone == 1
    out = read_image(tmp_path / "out" / "two.png")
    w = a.shape[1]
    assert np.abs(out[:, :w].astype(int) - a).mean() > 0.5
    assert psnr(out[:, w:], other) > 40  # the stranger: only the watermark
    assert read_label(tmp_path / "out" / "two.png") is not None
    # the reverse direction finds person A where B is wanted and says so
    result = convert(tmp_path / "in", trained_lite, tmp_path / "rev", ConvertConfig(to="a"))
    assert result.faces_swapped == 0
    everyone = convert(
        tmp_path / "in", trained_lite, tmp_path / "all", ConvertConfig(all_faces=True, mask="hull")
    )
    assert everyone.faces_swapped == 2


def test_smoothing_lowers_flicker(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    from faceloom.metrics import flicker

    scores = {}
    for smooth in (0.0, 1.0):
        out = tmp_path / f"s{smooth}.mp4"
        convert(grid["g3b"], trained_lite, out, ConvertConfig(smooth=smooth, end=2.0, color="none"))
        frames = read_frames(out)
        x0, y0, x1, y1 = face_boxes(frames[:1])[0]
        scores[smooth] = flicker([f[y0:y1, x0:x1] for f in frames])
    assert scores[1.0] < scores[0.0], scores


def test_preview_sheet(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    sheet = convert_preview(grid["g3b"], trained_lite, tmp_path / "p.png", 3)
    img = read_image(sheet)
    src = probe_video(grid["g3b"])
    assert img.shape[:2] == (3 * src.height, 2 * src.width)
    assert read_label(sheet) is not None


def test_faceless_video_is_copied_through(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    frames = [np.ascontiguousarray(f[:60, :80]) for f in read_frames(grid["g1"], limit=10)]  # no face
    src = write_video(tmp_path / "empty.mp4", [np.repeat(np.repeat(f, 4, 0), 4, 1) for f in frames])
    result = convert(src, trained_lite, tmp_path / "out.mp4")
    assert result.frames == 10 and result.faces_swapped == 0
    assert any("copied through unchanged" in w for w in result.warnings)
    assert psnr(read_frames(src)[5], read_frames(tmp_path / "out.mp4")[5]) > 38


def test_bad_input_and_existing_output(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 2000)
    proc = run("convert", bad, "--model", trained_lite, "--out", tmp_path / "o.mp4")
    assert proc.returncode == 2 and "broken.mp4" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="exists"):
        convert(grid["g3b"], trained_lite, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(InputError):
        convert(tmp_path / "missing.mp4", trained_lite, tmp_path / "o.mp4")
    proc = run(
        "convert", grid["g3b"], "--model", trained_lite, "--out", tmp_path / "o.mp4", "--mask", "learned"
    )
    assert proc.returncode == 2 and "learned mask" in proc.stderr
    assert not list(tmp_path.glob("*.tmp*")) and not (tmp_path / "o.mp4").exists()


def test_truncated_video_converts_what_it_can(
    grid: dict[str, Path], trained_lite: Path, tmp_path: Path
) -> None:
    src = write_video(tmp_path / "full.mkv", read_frames(grid["g3b"], limit=40))
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])  # Matroska stays readable up to the cut
    proc = run("convert", cut, "--model", trained_lite, "--out", tmp_path / "o.mp4", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert 10 < summary["frames"] < 40
    assert probe_video(tmp_path / "o.mp4").frames == summary["frames"]
