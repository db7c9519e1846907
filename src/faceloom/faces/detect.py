"""Face detector backends behind one interface, chosen by name (``--detector``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from faceloom.config import DetectorName
from faceloom.faces.types import DetectedFace


class FaceDetector(Protocol):
    """Finds faces and their 68 landmarks in one upright RGB frame.

    Implementations are not thread-safe; make one per worker thread.
    """

    name: str

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Args: rgb (H, W, 3) uint8, C-contiguous. Returns faces, largest first."""
        ...

    def close(self) -> None: ...


_REGISTRY: dict[str, Callable[[int], FaceDetector]] = {}


def register(name: str) -> Callable[[Callable[[int], FaceDetector]], Callable[[int], FaceDetector]]:
    """Register a detector factory taking ``max_faces``."""

    def deco(factory: Callable[[int], FaceDetector]) -> Callable[[int], FaceDetector]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_detectors() -> list[str]:
    _load_backends()
    return sorted(_REGISTRY)


def create_detector(name: DetectorName | str, max_faces: int = 4) -> FaceDetector:
    _load_backends()
    if name not in _REGISTRY:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](max_faces)


def _load_backends() -> None:
    # Importing the modules runs their @register decorators; their heavy imports stay lazy.
    from faceloom.faces import detect_dlib, detect_mediapipe  # noqa: F401


def _rotate_points_back(points: np.ndarray, rotation: int, frame_w: int, frame_h: int) -> np.ndarray:
    """Map points found in np.rot90(frame, k) back to the frame. ``rotation`` = 90 * k (ccw)."""
    x, y = points[:, 0], points[:, 1]
    if rotation == 90:  # rotated ccw: rot (x', y') came from frame (W-1-y', x')
        cols = (frame_w - 1 - y, x)
    elif rotation == 270:  # rotated cw: frame (y', H-1-x')
        cols = (y, frame_h - 1 - x)
    elif rotation == 180:
        cols = (frame_w - 1 - x, frame_h - 1 - y)
    else:
        return points
    return np.asarray(np.stack(cols, axis=1), dtype=np.float32)


def detect_with_rotation(
    detector: FaceDetector, rgb: np.ndarray, retry: bool = True, first_try: int = 0
) -> list[DetectedFace]:
    """Detect faces; when none are found, retry on copies turned by +-90 degrees (sideways video).

    Landmarks of faces found in a turned copy are mapped back to the frame's own coordinates, and
    the face's ``rotation`` records which turn found it. ``first_try`` lets a caller that tracks a
    sideways face try that turn first.
    """
    from faceloom.faces.types import bbox_of

    order = [first_try] + [r for r in (0, 90, 270) if r != first_try] if retry else [0]
    h, w = rgb.shape[:2]
    for rotation in order:
        image = rgb if rotation == 0 else np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
        faces = detector.detect(image)
        if not faces:
            continue
        if rotation:
            for face in faces:
                face.landmarks = _rotate_points_back(face.landmarks, rotation, w, h)
                if face.landmarks_full is not None:
                    face.landmarks_full = _rotate_points_back(face.landmarks_full, rotation, w, h)
                face.bbox = bbox_of(face.landmarks)
                face.rotation = rotation
        return faces
    return []
