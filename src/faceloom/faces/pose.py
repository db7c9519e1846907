"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks and a 3D mean face."""

from __future__ import annotations

import cv2
import numpy as np

from faceloom.faces.landmark_tables import MEAN_FACE_3D
from faceloom.faces.landmarks import JAW

_MODEL_3D = np.asarray(MEAN_FACE_3D, dtype=np.float64)
# Jaw points slide along the silhouette as the head turns, so the pose fit leaves them out.
_POSE_POINTS = np.r_[np.arange(17, 68), [JAW.start + 8]]


def estimate_pose(landmarks: np.ndarray, frame_size: tuple[int, int]) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees of a face with (68, 2) landmarks in a frame of (width, height).

    Yaw is positive when the subject turns to their left (face points to image right), pitch
    positive when looking up, roll positive when the head tilts clockwise in the image.
    """
    w, h = frame_size
    focal = float(max(w, h))
    camera = np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1]], dtype=np.float64)
    obj = _MODEL_3D[_POSE_POINTS]
    img = np.asarray(landmarks, dtype=np.float64)[_POSE_POINTS]
    no_distortion = np.zeros(4)
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera, no_distortion, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return 0.0, 0.0, 0.0
    ok, rvec, _ = cv2.solvePnP(
        obj,
        img,
        camera,
        no_distortion,
        rvec=rvec,
        tvec=tvec,
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    rot, _ = cv2.Rodrigues(rvec)
    # Decompose R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in camera axes (x right, y down, z forward).
    yaw = np.degrees(np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
    return float(-yaw), float(-pitch), float(roll)
