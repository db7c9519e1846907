"""The detail measure on real faces: it ranks a face above the same face resampled, a blurred face
far below, and a 2-pixel grid on a blurred face adds nothing (where the Laplacian's variance
jumps); the grid measure finds that grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom.checks import ShapeError
from faceloom.evaluation.sharpness import (
    detail_energy,
    detail_kept,
    grid_energy,
    laplacian_variance,
    sharpness_ratio,
)
from faceloom.faces.detect import create_detector
from faceloom.media.reader import iter_video


@pytest.fixture(scope="module")
def faces(data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """First frames of two s4_hq clips (faces ~185 px) and one s1_more clip (~90 px), with the
    landmark hull of each face as its mask."""
    clips = (
        sorted((data / "grid" / "s4_hq").glob("*.mpg"))[:2]
        + sorted((data / "grid" / "s1_more").glob("*.mpg"))[:1]
    )
    detector = create_detector("mediapipe")
    out = []
    try:
        for clip in clips:
            frame = next(iter_video(clip)).rgb
            face = detector.detect(frame)[0]
            mask = np.zeros(frame.shape[:2], np.float32)
            cv2.fillConvexPoly(mask, cv2.convexHull(face.landmarks.astype(np.int32)), (1.0,))
            out.append((frame, mask))
    finally:
        detector.close()
    return out


def resampled(img: np.ndarray, k: float) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (round(w / k), round(h / k)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_resampled_and_blurred_faces_rank_below_the_real_one(
    faces: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    for frame, mask in faces:
        assert sharpness_ratio(frame, frame, mask) == pytest.approx(1.0)
        by_15 = sharpness_ratio(resampled(frame, 1.5), frame, mask)
        by_2 = sharpness_ratio(resampled(frame, 2.0), frame, mask)
        blurred = sharpness_ratio(cv2.GaussianBlur(frame, (0, 0), 1.5), frame, mask)
        assert by_2 < by_15 < 0.95, (by_15, by_2)
        assert blurred < 0.65, blurred


def test_a_pixel_grid_adds_no_detail(faces: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for frame, mask in faces:
        blurred = cv2.GaussianBlur(frame, (0, 0), 1.5)
        h, w = frame.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        patterns = {
            "checkerboard": ((yy + xx) % 2) * 2 - 1,
            "every other row": (yy % 2) * 2 - 1,
            "pixel-shuffle 2x2": (yy % 2) * 2 + (xx % 2) - 1.5,
        }
        for name, pattern in patterns.items():
            gridded = np.clip(blurred + 6.0 * pattern[..., None], 0, 255).astype(np.uint8)
            gain = detail_energy(gridded, mask) / detail_energy(blurred, mask)
            assert gain == pytest.approx(1.0, abs=0.01), (name, gain)
            assert laplacian_variance(gridded, mask) > 10 * laplacian_variance(blurred, mask), name
            # ... and the grid measure finds it, well above what a real face holds there
            assert (
                grid_energy(gridded, mask) > 2 * grid_energy(frame, mask) > 4 * grid_energy(blurred, mask)
            ), name
        assert grid_energy(frame, mask) < detail_energy(frame, mask)


def test_the_old_face_showing_through_is_told_from_the_swaps_own_detail(
    faces: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    """A soft swap whose mask keeps the old eyes scores higher on sharpness; ``detail_kept`` says
    why."""
    for frame, mask in faces:
        soft = cv2.GaussianBlur(frame, (0, 0), 2.5)
        ys = np.nonzero(mask.any(axis=1))[0]
        top, height = ys[0], ys[-1] - ys[0]
        eyes = np.zeros_like(mask)
        eyes[top : top + int(0.4 * height)] = 1  # the band of brows and eyes
        leaky = np.where(eyes[..., None] * mask[..., None] > 0, frame, soft).astype(np.uint8)
        assert detail_kept(frame, frame, mask) == pytest.approx(1.0)
        assert detail_kept(soft, frame, mask) < 0.3
        assert detail_kept(leaky, frame, mask) > max(0.4, 2 * detail_kept(soft, frame, mask))
        assert sharpness_ratio(leaky, frame, mask) > 1.5 * sharpness_ratio(soft, frame, mask)


def test_shapes_are_checked() -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ShapeError):
        detail_energy(img, np.ones((16, 16), np.float32))
    with pytest.raises(ValueError, match="empty"):
        detail_energy(img, np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        sharpness_ratio(img, np.zeros((16, 16, 3), np.uint8))
