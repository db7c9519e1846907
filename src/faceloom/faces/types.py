"""Plain data types shared by every face backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DetectedFace:
    """A face found in one frame, in that frame's pixel coordinates.

    Attributes:
        landmarks: (68, 2) float32, iBUG/dlib order.
        landmarks_full: (N, 2) float32 of the backend's own set (mediapipe: 478), or None.
        bbox: (x0, y0, x1, y1) float box around the landmarks.
        score: detector confidence in [0, 1] (dlib HOG scores are squashed to that range).
        rotation: 0, 90 or 270 when the face was only found in a rotated copy of the frame.
    """

    landmarks: np.ndarray
    bbox: tuple[float, float, float, float]
    score: float
    landmarks_full: np.ndarray | None = None
    rotation: int = 0

    @property
    def size(self) -> float:
        """Side of the face box in pixels (the larger of width and height)."""
        x0, y0, x1, y1 = self.bbox
        return float(max(x1 - x0, y1 - y0))


def bbox_of(points: np.ndarray) -> tuple[float, float, float, float]:
    """Axis-aligned box (x0, y0, x1, y1) of (N, 2) points."""
    lo = points.min(axis=0)
    hi = points.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
