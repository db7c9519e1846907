"""Follow faces between detections: the detector runs every N frames (or when a face is lost), and in
between each face's 68 landmarks are carried to the new frame by pyramidal Lucas-Kanade optical flow.

A point counts only when tracking it forward and back again returns within ``FB_MAX`` pixels;
points that fail move with the similarity transform fitted to those that held. A face whose points
mostly fail, or that leaves the frame, is lost, and the next frame is detected afresh.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceloom.config import ConvertConfig
from faceloom.convert.face_swapper import FaceSwapper
from faceloom.convert.finder import FaceFinder
from faceloom.faces.types import bbox_of

FB_MAX = 1.5
"""Forward-backward error (pixels) above which a tracked point is not trusted."""

MIN_HELD = 0.5
"""Share of a face's points that must hold for the face to count as tracked."""

_LK = {
    "winSize": (21, 21),
    "maxLevel": 3,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
}


def track_points(prev: np.ndarray, cur: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """Carry ``points`` (P, 2) from grey frame ``prev`` to ``cur``; None when the face is lost."""
    p0 = points.reshape(-1, 1, 2).astype(np.float32)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **_LK)  # type: ignore[call-overload]
    back, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **_LK)  # type: ignore[call-overload]
    fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
    held = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < FB_MAX)
    if held.mean() < MIN_HELD:
        return None
    src, dst = p0.reshape(-1, 2), p1.reshape(-1, 2)
    matrix, _ = cv2.estimateAffinePartial2D(src[held], dst[held], method=cv2.LMEDS)
    if matrix is None:
        return None
    moved = src @ matrix[:, :2].T + matrix[:, 2]
    moved[held] = dst[held]
    h, w = cur.shape[:2]
    box = bbox_of(moved)
    fw, fh = 0.05 * (box[2] - box[0]), 0.05 * (box[3] - box[1])
    if box[0] < -fw or box[1] < -fh or box[2] > w + fw or box[3] > h + fh:
        return None  # leaving the frame: let the detector decide
    return np.asarray(moved, dtype=np.float32)


class LiveFaceFinder(FaceFinder):
    """:class:`FaceFinder` that detects every ``detect_every`` frames and tracks the landmarks between.

    Attributes:
        detections: frames the detector ran on; tracked: frames whose faces were followed instead.
    """

    def __init__(self, swapper: FaceSwapper, config: ConvertConfig, detect_every: int) -> None:
        super().__init__(swapper, config)
        self.detect_every = detect_every
        self.detections = 0
        self.tracked = 0
        self._grey: np.ndarray | None = None
        self._faces_now: list[np.ndarray] = []
        self._since_detect = 0

    def warm_up(self) -> None:
        """Load the detector and the identity embedder and run each once, before the source opens,
        so that the first frames are not late."""
        from faceloom.faces.align import MEAN_FACE
        from faceloom.faces.detect import create_detector
        from faceloom.faces.identity import FaceEmbedder

        blank = np.zeros((480, 640, 3), np.uint8)
        if self.detector is None:
            self.detector = create_detector(self.cfg.detector)
        self.detector.detect(blank)
        wanted = any(e is not None for e in self.swapper.embeddings.values())
        if self.embedder is None and not self.cfg.all_faces and wanted:
            self.embedder = FaceEmbedder()
            self.embedder.embed(blank, np.asarray(MEAN_FACE, np.float32) * 200 + 200)

    def _faces(self, rgb: np.ndarray, index: int) -> list[tuple[np.ndarray, tuple[float, ...], int | None]]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        prev, self._grey = self._grey, grey
        if (
            self.detect_every > 1
            and prev is not None
            and self._faces_now
            and self._since_detect < self.detect_every
        ):
            moved = [track_points(prev, grey, lm) for lm in self._faces_now]
            if all(m is not None for m in moved):
                self._since_detect += 1
                self.tracked += 1
                self._faces_now = [m for m in moved if m is not None]
                return [(lm, bbox_of(lm), None) for lm in self._faces_now]
        found = super()._faces(rgb, index)
        self.detections += 1
        self._since_detect = 1
        self._faces_now = [lm for lm, _, _ in found]
        return found
