"""The common 68-point landmark set (iBUG 300-W / dlib order) and conversions into it."""

from __future__ import annotations

import numpy as np

from faceloom.checks import check_shape
from faceloom.faces.landmark_tables import MESH_TO_68_INDEX, MESH_TO_68_WEIGHT

JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)
LEFT_BROW = slice(22, 27)
NOSE = slice(27, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
INNER = slice(17, 68)
"""Brows, nose, eyes and mouth: the points alignment is fitted to (the jaw moves with speech)."""

_MESH_INDEX = np.asarray(MESH_TO_68_INDEX, dtype=np.int64)
_MESH_WEIGHT = np.asarray(MESH_TO_68_WEIGHT, dtype=np.float32)


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """Map mediapipe face-mesh points (478 with iris refinement) to the 68-point set.

    Each iBUG point is a fixed weighted sum of three mesh vertices, fitted against dlib's predictor
    by tools/fit_landmark_tables.py.

    Args:
        mesh: (478, D) array, D = 2 or 3.
    Returns:
        (68, D) float32.
    """
    check_shape(mesh[:478], "478 D", "mesh points")
    picked = mesh[_MESH_INDEX].astype(np.float32)  # (68, 3, D)
    return np.asarray((picked * _MESH_WEIGHT[:, :, None]).sum(axis=1), dtype=np.float32)


def eye_centers(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right eye (image left) and left eye, from (68, 2) points."""
    return landmarks[RIGHT_EYE].mean(axis=0), landmarks[LEFT_EYE].mean(axis=0)


def interocular(landmarks: np.ndarray) -> float:
    """Distance between the eye centres in pixels: the usual unit of landmark error."""
    right, left = eye_centers(landmarks)
    return float(np.linalg.norm(left - right))


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(a - b, axis=-1))


def expression_measures(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Mouth opening, eye aspect ratio and mouth width of faces.

    Args:
        landmarks: (N, 68, 2) or (68, 2) landmarks, ideally in an aligned crop (any scale).

    Returns:
        ``mouth_open``, ``eye_open`` and ``mouth_width`` (mouth width over eye distance), each (N,)
        or 0-d float64.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be (68, 2) or (N, 68, 2), got {p.shape}")
    width = np.maximum(_dist(p[..., 48, :], p[..., 54, :]), 1e-6)
    gap = (
        _dist(p[..., 61, :], p[..., 67, :])
        + _dist(p[..., 62, :], p[..., 66, :])
        + _dist(p[..., 63, :], p[..., 65, :])
    ) / 3.0

    def ear(e: np.ndarray) -> np.ndarray:
        vertical = _dist(e[..., 1, :], e[..., 5, :]) + _dist(e[..., 2, :], e[..., 4, :])
        return np.asarray(vertical / (2.0 * np.maximum(_dist(e[..., 0, :], e[..., 3, :]), 1e-6)))

    eyes = (ear(p[..., 36:42, :]) + ear(p[..., 42:48, :])) / 2.0
    iod = np.maximum(_dist(p[..., 36:42, :].mean(axis=-2), p[..., 42:48, :].mean(axis=-2)), 1e-6)
    return {"mouth_open": gap / width, "eye_open": eyes, "mouth_width": width / iod}
