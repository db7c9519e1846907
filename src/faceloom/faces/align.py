"""Similarity alignment of faces to a mean face, and the crops derived from one stored head crop.

Coordinates: the mean face lives in a unit "face space" where its brows, eyes, nose and mouth fit
the box [0, 1]^2. A crop type is a square region of face space (centre and side). Extraction
stores the generous ``head`` crop; ``face`` and ``whole_face`` are sub-squares of it, so every
model trains from one extraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from faceloom.faces.landmark_tables import MEAN_FACE_2D
from faceloom.faces.landmarks import INNER

CropType = Literal["face", "whole_face", "head"]

MEAN_FACE = np.asarray(MEAN_FACE_2D, dtype=np.float64)
"""(68, 2) mean face in unit face space."""


@dataclass(frozen=True)
class CropRegion:
    center: tuple[float, float]
    side: float


CROP_REGIONS: dict[CropType, CropRegion] = {
    "face": CropRegion(center=(0.5, 0.55), side=1.25),
    "whole_face": CropRegion(center=(0.5, 0.5), side=1.7),
    "head": CropRegion(center=(0.5, 0.36), side=2.6),
}
STORED_CROP: CropType = "head"


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift) taking src onto dst.

    Args:
        src, dst: (N, 2) corresponding points.
    Returns:
        (2, 3) affine matrix M with dst ~= M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1.0
    rot = u @ e @ vt
    var = s.var(axis=0).sum()
    scale = float(np.trace(np.diag(sig) @ e) / var) if var > 0 else 1.0
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


def face_space_to_crop(crop: CropType, size: int) -> np.ndarray:
    """(3, 3) matrix from unit face space to pixels of a ``size`` x ``size`` crop of the given type."""
    region = CROP_REGIONS[crop]
    k = size / region.side
    ox = region.center[0] - region.side / 2
    oy = region.center[1] - region.side / 2
    return np.array([[k, 0.0, -ox * k], [0.0, k, -oy * k], [0.0, 0.0, 1.0]])


def alignment_matrix(landmarks: np.ndarray, size: int, crop: CropType = STORED_CROP) -> np.ndarray:
    """(2, 3) frame -> crop matrix that puts (68, 2) frame landmarks on the mean face."""
    to_face = np.vstack([umeyama(landmarks[INNER], MEAN_FACE[INNER]), [0.0, 0.0, 1.0]])
    return np.asarray((face_space_to_crop(crop, size) @ to_face)[:2], dtype=np.float64)


def warp_crop(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut the aligned ``size`` x ``size`` crop out of a frame with a (2, 3) frame -> crop matrix."""
    # Shrinking a big face with plain bilinear sampling aliases; INTER_AREA is not supported by
    # warpAffine, so use bicubic and rely on the crop being at most ~2x smaller than the face.
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return np.asarray(pts @ matrix[:, :2].T + matrix[:, 2], dtype=np.float32)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    return np.asarray(cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64)))


def subcrop_box(stored: CropType, stored_size: int, wanted: CropType) -> tuple[float, float, float]:
    """Where the ``wanted`` crop sits inside a stored crop: (x0, y0, side) in stored-crop pixels."""
    inner = CROP_REGIONS[wanted]
    to_px = face_space_to_crop(stored, stored_size)
    x0 = inner.center[0] - inner.side / 2
    y0 = inner.center[1] - inner.side / 2
    px = to_px @ np.array([x0, y0, 1.0])
    return float(px[0]), float(px[1]), float(inner.side * to_px[0, 0])


def derive_crop(
    stored_rgb: np.ndarray, wanted: CropType, size: int, stored: CropType = STORED_CROP
) -> np.ndarray:
    """Cut a ``face`` / ``whole_face`` crop of ``size`` px from a stored (head) crop.

    Args:
        stored_rgb: (S, S, 3) stored crop.
    Returns:
        (size, size, 3) crop of the wanted type.
    """
    x0, y0, side = subcrop_box(stored, stored_rgb.shape[0], wanted)
    k = size / side
    matrix = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    if interp == cv2.INTER_AREA:
        x1, y1, s = round(x0), round(y0), round(side)
        if x1 >= 0 and y1 >= 0 and x1 + s <= stored_rgb.shape[1] and y1 + s <= stored_rgb.shape[0]:
            return cv2.resize(stored_rgb[y1 : y1 + s, x1 : x1 + s], (size, size), interpolation=interp)
    return cv2.warpAffine(
        stored_rgb, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
    )
