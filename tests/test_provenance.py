"""faceloom.provenance and `faceloom verify`: the invisible watermark and the label, on real clips."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom import metrics
from faceloom.errors import InputError
from faceloom.media.writer import VideoWriter, read_label, write_image
from faceloom.provenance import (
    MAX_VIDEO_SAMPLES,
    NULL_CEILING,
    THRESHOLD,
    VerifyResult,
    Watermark,
    WatermarkResult,
    detect_watermark,
    verify,
    visible_label_filter,
    watermark_filter,
)
from tests.media_helpers import read_frames, write_video

MARKED_FRAMES = 40


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def g1_frames(grid: dict[str, Path]) -> list[np.ndarray]:
    return read_frames(grid["g1"], limit=MARKED_FRAMES)


@pytest.fixture(scope="module")
def marked_video(g1_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GRID g1 written through the one writer with the watermark filter (and the default label)."""
    path = tmp_path_factory.mktemp("provenance") / "marked.mp4"
    h, w = g1_frames[0].shape[:2]
    with VideoWriter(path, 25, (w, h), frame_filters=[watermark_filter()]) as writer:
        for rgb in g1_frames:
            writer.write(rgb)
    return path


@pytest.fixture(scope="module")
def reencoded_half(marked_video: Path) -> Path:
    """The marked video decoded, shrunk to half size and re-encoded by PyAV/libx264 at crf 23."""
    frames = [half(f) for f in read_frames(marked_video)]
    return write_video(marked_video.with_name("reencoded_half.mp4"), frames, crf=23)


def all_clips(grid: dict[str, Path], crema: list[Path]) -> list[Path]:
    clips = [*grid.values(), *crema]
    assert len(clips) == 10, clips
    return clips


# ------------------------------------------------------------------------------------- embedding


def test_filter_keeps_shape_input_and_psnr_bound(grid: dict[str, Path], crema: list[Path]) -> None:
    mark = watermark_filter()
    for clip in (grid["g1"], grid["g3"], crema[0]):
        frames = read_frames(clip, limit=3)
        for i, rgb in enumerate([*frames, cv2.resize(frames[0], (1280, 720))]):
            before = rgb.copy()
            out = mark(rgb, i)
            assert out.shape == rgb.shape and out.dtype == np.uint8
            assert np.array_equal(rgb, before), "the filter must not change its input"
            assert not np.array_equal(out, rgb)
            assert metrics.psnr(out, rgb) >= 43.0, clip
            diff = (out.astype(np.int16) - rgb.astype(np.int16))[
                (rgb > 3).all(axis=2) & (rgb < 252).all(axis=2)
            ]
            assert np.array_equal(diff[:, 0], diff[:, 1]) and np.array_equal(diff[:, 0], diff[:, 2]), (
                "the pattern goes to luma only: R, G and B change alike (away from clipping)"
            )


def test_embedding_is_fast_for_720p() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    mark = watermark_filter()
    mark(frame, 0)  # builds the cached pattern for this size
    n = 50
    start = time.perf_counter()
    for i in range(n):
        mark(frame, i)
    per_frame = (time.perf_counter() - start) / n
    assert per_frame < 0.010, f"{per_frame * 1e3:.2f} ms per 720p frame"  # ~0.2 ms measured; CI is noisy


def test_filter_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        watermark_filter()(np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        watermark_filter()(np.zeros((8, 8, 3), np.float32), 0)


def test_visible_label_darkens_a_corner_and_writes_text(g1_frames: list[np.ndarray]) -> None:
    rgb = g1_frames[0]
    out = visible_label_filter()(rgb, 0)
    h, w = rgb.shape[:2]
    assert out.shape == rgb.shape and out.dtype == np.uint8
    changed = np.any(out != rgb, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.min() > h * 0.8 and xs.max() < w * 0.6, "the label stays in the bottom-left corner"
    box = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert (box.max(axis=2) >= 200).mean() > 0.05, "white text on the box"
    assert np.median(box) < 60, "a dark box behind the text"
    tiny = visible_label_filter("SYNTHETIC")(np.full((40, 60, 3), 200, np.uint8), 0)
    assert tiny.shape == (40, 60, 3)
    with pytest.raises(ValueError):
        visible_label_filter("")


# ------------------------------------------------------------------------------------- detection


def test_marked_video_is_found_with_label(marked_video: Path, g1_frames: list[np.ndarray]) -> None:
    result = verify(marked_video)
    assert isinstance(result, VerifyResult) and result.kind == "video"
    assert result.watermark.found and result.watermark.score >= 2 * THRESHOLD, result.watermark
    assert result.watermark.frames == MARKED_FRAMES
    assert result.label is not None and result.label["synthetic"] == "1"
    assert result.synthetic
    decoded = read_frames(marked_video, limit=5)
    assert all(metrics.psnr(a, b) > 35 for a, b in zip(decoded, g1_frames, strict=False))
    one = detect_watermark(decoded[:1])
    assert one.found and one.frames == 1, "a single decoded frame is enough"


def test_reencoded_half_size_is_still_found(reencoded_half: Path) -> None:
    result = verify(reencoded_half)
    assert result.label is None, "the re-encode drops the metadata: only the watermark is left"
    assert result.watermark.found, result.watermark
    assert result.watermark.score >= 1.5 * THRESHOLD, result.watermark
    assert result.synthetic


def test_no_false_positive_on_real_clips(grid: dict[str, Path], crema: list[Path]) -> None:
    scores = {}
    for clip in all_clips(grid, crema):
        result = verify(clip)
        scores[clip.name] = result.watermark.score
        assert result.label is None and not result.watermark.found and not result.synthetic, result
        assert 0 < result.watermark.frames <= MAX_VIDEO_SAMPLES
    # Unmarked, the best of the search's tries stays well below the threshold, not only below it.
    assert max(abs(s) for s in scores.values()) < NULL_CEILING, scores


def test_no_false_positive_on_images_of_real_frames(
    grid: dict[str, Path], crema: list[Path], tmp_path: Path
) -> None:
    scores = []
    for clip in all_clips(grid, crema):
        frames = read_frames(clip)
        for i in (0, len(frames) // 2, len(frames) - 1):
            rgb = frames[i]
            for variant in (rgb, half(rgb), cv2.resize(rgb, (1280, 720)), rgb[:, ::-1]):
                scores.append(detect_watermark([variant]).score)
        png = tmp_path / f"{clip.stem}.png"
        jpg = tmp_path / f"{clip.stem}.jpg"
        write_image(png, frames[0], synthetic=False)
        write_image(jpg, frames[-1], synthetic=False, quality=90)
        for path in (png, jpg):
            result = verify(path)
            assert result.kind == "image" and not result.synthetic, result
            scores.append(result.watermark.score)
    assert max(abs(s) for s in scores) < NULL_CEILING, sorted(scores)[-5:]


def test_marked_images_png_and_jpeg(grid: dict[str, Path], crema: list[Path], tmp_path: Path) -> None:
    for clip in (grid["g2"], crema[3]):
        rgb = read_frames(clip, limit=1)[0]
        for suffix, quality in ((".png", 95), (".jpg", 90)):
            path = tmp_path / f"{clip.stem}{suffix}"
            write_image(path, rgb, frame_filters=[watermark_filter()], quality=quality, synthetic=False)
            result = verify(path)
            assert read_label(path) is None
            assert result.kind == "image" and result.watermark.found, (path, result.watermark)
            assert result.watermark.score >= 2 * THRESHOLD
        marked = watermark_filter()(rgb, 0)
        small_jpeg = tmp_path / "small.jpg"
        write_image(small_jpeg, half(marked), synthetic=False, quality=90)
        assert verify(small_jpeg).watermark.found, "a half-size JPEG copy keeps the mark"


def test_other_key_does_not_see_ours(g1_frames: list[np.ndarray]) -> None:
    marked = [watermark_filter()(f, i) for i, f in enumerate(g1_frames[:10])]
    assert detect_watermark(marked).found
    other = Watermark(seed=12345).detect(marked)
    assert not other.found and abs(other.score) < NULL_CEILING


def test_detect_edge_cases() -> None:
    empty = detect_watermark([])
    assert empty == WatermarkResult(found=False, score=0.0, frames=0)
    flat = detect_watermark([np.full((120, 160, 3), 90, np.uint8)])
    assert not flat.found and flat.frames == 1
    marked_flat = detect_watermark([watermark_filter()(np.full((240, 320, 3), 90, np.uint8), 0)])
    assert marked_flat.found


def test_verify_unreadable_files_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.mp4"):
        verify(tmp_path / "nope.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match=r"corrupt\.mp4"):
        verify(corrupt)
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match=r"bad\.png"):
        verify(bad_png)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes(
    marked_video: Path, reencoded_half: Path, grid: dict[str, Path], tmp_path: Path
) -> None:
    found = run_cli("verify", marked_video)
    assert found.returncode == 0, found.stderr
    assert (
        "synthetic" in found.stdout
        and "label: present" in found.stdout
        and "watermark: found" in found.stdout
    )

    as_json = run_cli("verify", reencoded_half, "--json")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["synthetic"] is True and summary["label"] is None
    assert summary["watermark"]["found"] is True and summary["watermark"]["score"] >= THRESHOLD

    clean = run_cli("verify", grid["g1"])
    assert clean.returncode == 1, clean.stderr
    assert "no faceloom label or watermark" in clean.stdout and "not found" in clean.stdout

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(4).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    bad = run_cli("verify", corrupt)
    assert bad.returncode == 2
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "corrupt.mp4" in lines[0], bad.stderr
