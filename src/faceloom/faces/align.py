"""Similarity alignment of faces to a mean face, and the crops derived from one stored head crop.

Coordinates: a face space is a unit square where a template's landmarks live; a face is put in it
by the least-squares similarity (umeyama) of some of its 68 landmarks onto the template. faceloom's
own space fits the inner landmarks to its mean face (brows, eyes, nose and mouth fill [0, 1]^2);
DFL's space fits landmarks 17..48 and 54 to DeepFaceLab's template. A crop type is a square region
(centre and side) of one face space. Extraction stores the generous ``head`` crop; every other crop
is cut from it (a sub-square for crops of the same space, a landmark fit for DFL's), so every model
trains from one extraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from faceloom.config.choices import CROP_TYPES, CropType
from faceloom.faces.dfl_template import (
    DFL_INDICES,
    DFL_TEMPLATE,
    WHOLE_FACE_PADDING,
    WHOLE_FACE_RAISE,
    square_side,
)
from faceloom.faces.landmark_tables import MEAN_FACE_2D

MEAN_FACE = np.asarray(MEAN_FACE_2D, dtype=np.float64)
"""(68, 2) mean face in faceloom's unit face space."""


@dataclass(frozen=True)
class FaceSpace:
    """A unit square a face is fitted into: ``template`` (K, 2) is where landmarks ``indices`` go."""

    name: str
    indices: tuple[int, ...]
    template: np.ndarray = field(compare=False)


FACELOOM_SPACE = FaceSpace("faceloom", tuple(range(17, 68)), MEAN_FACE[17:68])
DFL_SPACE = FaceSpace("dfl", DFL_INDICES, np.asarray(DFL_TEMPLATE, dtype=np.float64))


@dataclass(frozen=True)
class CropRegion:
    center: tuple[float, float]
    side: float
    space: FaceSpace = FACELOOM_SPACE


CROP_REGIONS: dict[CropType, CropRegion] = {
    "face": CropRegion(center=(0.5, 0.55), side=1.25),
    "whole_face": CropRegion(center=(0.5, 0.5), side=1.7),
    "head": CropRegion(center=(0.5, 0.36), side=2.6),
    # What DeepFaceLab and DeepFaceLive crop for a whole_face model (DFL's get_transform_mat).
    "dfl_whole_face": CropRegion(
        center=(0.5, 0.5 - WHOLE_FACE_RAISE), side=square_side(WHOLE_FACE_PADDING), space=DFL_SPACE
    ),
}
if set(CROP_REGIONS) != set(CROP_TYPES):
    raise TypeError(f"CROP_REGIONS {sorted(CROP_REGIONS)} differ from CropType {sorted(CROP_TYPES)}")
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
    """(2, 3) image -> crop matrix that fits (68, 2) image landmarks into the crop's face space."""
    space = CROP_REGIONS[crop].space
    lm = np.asarray(landmarks, dtype=np.float64)[list(space.indices)]
    to_face = np.vstack([umeyama(lm, space.template), [0.0, 0.0, 1.0]])
    return np.asarray((face_space_to_crop(crop, size) @ to_face)[:2], dtype=np.float64)


def same_space(a: CropType, b: CropType) -> bool:
    """Whether crop ``b`` is a fixed square of crop ``a`` (same face space), whatever the face."""
    return CROP_REGIONS[a].space == CROP_REGIONS[b].space


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
    """Where the ``wanted`` crop sits inside a stored crop: (x0, y0, side) in stored-crop pixels.

    Only for crops of the same face space (:func:`same_space`); others depend on the face, see
    :func:`stored_to_crop`.
    """
    if not same_space(stored, wanted):
        raise ValueError(f"{wanted} is not a fixed square of {stored}; use stored_to_crop with landmarks")
    inner = CROP_REGIONS[wanted]
    to_px = face_space_to_crop(stored, stored_size)
    x0 = inner.center[0] - inner.side / 2
    y0 = inner.center[1] - inner.side / 2
    px = to_px @ np.array([x0, y0, 1.0])
    return float(px[0]), float(px[1]), float(inner.side * to_px[0, 0])


def stored_to_crop(
    stored: CropType, stored_size: int, wanted: CropType, size: int, landmarks: np.ndarray | None = None
) -> np.ndarray:
    """(2, 3) matrix from stored-crop pixels to pixels of the ``wanted`` crop at ``size`` px.

    Args:
        landmarks: (68, 2) the face's landmarks in stored-crop pixels; needed when the wanted crop
            lives in another face space (a similarity fit is the same whether made on the frame or
            on a similarity-aligned crop of it, so this equals cropping the frame directly).
    """
    if same_space(stored, wanted):
        x0, y0, side = subcrop_box(stored, stored_size, wanted)
        k = size / side
        return np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]])
    if landmarks is None:
        raise ValueError(f"cutting {wanted} out of {stored} needs the face's landmarks")
    return alignment_matrix(landmarks, size, wanted)


def derive_crop(
    stored_rgb: np.ndarray,
    wanted: CropType,
    size: int,
    stored: CropType = STORED_CROP,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Cut a crop of the ``wanted`` type and ``size`` px from a stored (head) crop.

    Args:
        stored_rgb: (S, S, 3) stored crop.
        landmarks: (68, 2) in stored-crop pixels; only needed for crops of another face space.
    Returns:
        (size, size, 3) crop of the wanted type.
    """
    matrix = stored_to_crop(stored, stored_rgb.shape[0], wanted, size, landmarks)
    if not same_space(stored, wanted):
        return warp_crop(stored_rgb, matrix, size)
    x0, y0, side = subcrop_box(stored, stored_rgb.shape[0], wanted)
    k = size / side
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    if interp == cv2.INTER_AREA:
        x1, y1, s = round(x0), round(y0), round(side)
        if x1 >= 0 and y1 >= 0 and x1 + s <= stored_rgb.shape[1] and y1 + s <= stored_rgb.shape[0]:
            return cv2.resize(stored_rgb[y1 : y1 + s, x1 : x1 + s], (size, size), interpolation=interp)
    return cv2.warpAffine(
        stored_rgb, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
    )
