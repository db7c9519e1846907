"""Default backend: mediapipe face mesh (478 points, mapped to 68), with its full-range detector
as a fallback for faces too small for the mesh's own short-range finder."""

from __future__ import annotations

from typing import Any

import numpy as np

from faceloom.faces.detect import register
from faceloom.faces.landmarks import mesh_to_68
from faceloom.faces.types import DetectedFace, bbox_of


class MediapipeDetector:
    name = "mediapipe"

    def __init__(self, max_faces: int = 4) -> None:
        from faceloom.runtime import quiet_native_logs

        quiet_native_logs()
        import mediapipe as mp

        self.max_faces = max_faces
        self._mp = mp
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
        )
        self._single_mesh: Any = None
        self._finder: Any = None

    def _lazy_fallbacks(self) -> None:
        if self._finder is None:
            self._finder = self._mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=0.5
            )
            self._single_mesh = self._mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
            )

    @staticmethod
    def _to_face(
        landmarks: Any, w: int, h: int, dx: float = 0.0, dy: float = 0.0, k: float = 1.0
    ) -> DetectedFace:
        pts = np.array([(p.x * w, p.y * h) for p in landmarks.landmark], dtype=np.float32)
        pts = pts * k + np.array([dx, dy], dtype=np.float32)
        lm68 = mesh_to_68(pts)
        return DetectedFace(landmarks=lm68, bbox=bbox_of(lm68), score=1.0, landmarks_full=pts)

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        faces = [self._to_face(lm, w, h) for lm in (result.multi_face_landmarks or [])]
        if not faces:
            faces = self._detect_small(rgb)
        faces.sort(key=lambda f: f.size, reverse=True)
        return faces[: self.max_faces]

    def _detect_small(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Full-range detection, then the mesh on an enlarged square crop around each box."""
        import cv2

        self._lazy_fallbacks()
        h, w = rgb.shape[:2]
        found = self._finder.process(rgb)
        faces = []
        for det in (found.detections or [])[: self.max_faces]:
            box = det.location_data.relative_bounding_box
            cx, cy = (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h
            side = 2.0 * max(box.width * w, box.height * h)
            x0, y0 = cx - side / 2, cy - side / 2
            k = side / 256.0
            matrix = np.array([[1 / k, 0, -x0 / k], [0, 1 / k, -y0 / k]], dtype=np.float64)
            crop = cv2.warpAffine(rgb, matrix, (256, 256), flags=cv2.INTER_LINEAR)
            res = self._single_mesh.process(crop)
            if res.multi_face_landmarks:
                face = self._to_face(res.multi_face_landmarks[0], 256, 256, dx=x0, dy=y0, k=k)
                face.score = float(det.score[0]) if det.score else 1.0
                faces.append(face)
        return faces

    def close(self) -> None:
        for graph in (self._mesh, self._single_mesh, self._finder):
            if graph is not None:
                graph.close()


@register("mediapipe")
def _make(max_faces: int) -> MediapipeDetector:
    return MediapipeDetector(max_faces)
