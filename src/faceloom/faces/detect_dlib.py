"""Second backend: dlib's HOG (or CNN) detector with its 68-point shape predictor."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from typing import Any

import numpy as np

from faceloom.faces.detect import register
from faceloom.faces.types import DetectedFace, bbox_of


@cache
def dlib_model_path(name: str) -> str:
    """Path of a model file shipped by the face-recognition-models wheel.

    Found via importlib: importing that package needs pkg_resources, which new setuptools lacks.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed; reinstall faceloom")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "models", name)
    if not os.path.exists(path):
        raise RuntimeError(f"dlib model file missing: {path}")
    return path


def dlib_shape(landmarks: np.ndarray) -> Any:
    """A ``dlib.full_object_detection`` of (68, 2) landmarks (rounded to pixels) in their bounding box:
    what dlib's chip and descriptor functions take."""
    import dlib

    pts = [dlib.point(round(float(x)), round(float(y))) for x, y in landmarks]
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    return dlib.full_object_detection(rect, pts)


class DlibDetector:
    def __init__(self, max_faces: int = 4, cnn: bool = False) -> None:
        import dlib

        self.name = "dlib-cnn" if cnn else "dlib"
        self.max_faces = max_faces
        self._cnn = cnn
        self._detector: Any = (
            dlib.cnn_face_detection_model_v1(dlib_model_path("mmod_human_face_detector.dat"))
            if cnn
            else dlib.get_frontal_face_detector()
        )
        self._predictor = dlib.shape_predictor(dlib_model_path("shape_predictor_68_face_landmarks.dat"))

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        faces = []
        if self._cnn:
            found = [(d.rect, float(d.confidence)) for d in self._detector(img, 0)]
        else:
            rects, scores, _ = self._detector.run(img, 0, 0.0)
            # HOG scores are SVM margins, mostly 0..3; squash to (0, 1).
            found = [(r, float(1 / (1 + np.exp(-2 * s)))) for r, s in zip(rects, scores, strict=True)]
        for rect, score in found:
            shape = self._predictor(img, rect)
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            faces.append(DetectedFace(landmarks=pts, bbox=bbox_of(pts), score=score))
        faces.sort(key=lambda f: f.size, reverse=True)
        return faces[: self.max_faces]

    def close(self) -> None:
        pass


@register("dlib")
def _make_hog(max_faces: int) -> DlibDetector:
    return DlibDetector(max_faces, cnn=False)


@register("dlib-cnn")
def _make_cnn(max_faces: int) -> DlibDetector:
    return DlibDetector(max_faces, cnn=True)
