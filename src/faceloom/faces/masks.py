"""Landmark masks on aligned crops.

All functions take the 68 iBUG landmarks in the pixel coordinates of the crop the mask is for. For a
faceset row that is ``transform_points(record.landmarks_array, record.matrix_array)`` (stored crop of
``record.size`` px); scale the points by ``size / record.size`` for a resized crop.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceloom.faces.landmarks import INNER, LEFT_BROW, LEFT_EYE, MOUTH, RIGHT_BROW, RIGHT_EYE, interocular

_SHIFT = 4
"""Sub-pixel bits for OpenCV polygon filling: points are drawn at 1/16 px precision."""

FOREHEAD_LIFT = 0.5
"""How far the brows are pushed up for the hull, as a fraction of the eye-to-brow distance (faceswap's
"extended" mask uses the same half-distance)."""

FEATURE_MARGIN = 0.08
"""Eye and mouth regions of :func:`region_weights` are grown by this fraction of the interocular
distance, so they cover lids and lips and stay non-empty when an eye is closed."""


def _check(landmarks: np.ndarray, size: int) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    if size < 1:
        raise ValueError(f"mask size must be positive, got {size}")
    return pts


def extended_points(landmarks: np.ndarray) -> np.ndarray:
    """The 68 landmarks with the brows lifted to cover the forehead, as faceswap's "extended" mask.

    Each brow point moves away from the matching point on the top of the eye (or beside it, for the
    outer brow ends) by ``FOREHEAD_LIFT`` times their distance.

    Args:
        landmarks: :math:`(68, 2)` points in crop pixels.

    Returns:
        :math:`(68, 2)` float64 points; only indices 17-26 (brows) differ from the input.
    """
    pts = np.array(landmarks, dtype=np.float64, copy=True)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    # Points below each brow point: the top of the eye, and halfway from the eye corner to the jaw
    # side for the outer brow ends (the eye has no point under them).
    outer_r = (pts[36] + (pts[36] + pts[0]) / 2) / 2
    outer_l = (pts[45] + (pts[45] + pts[16]) / 2) / 2
    below_r = np.stack([outer_r, pts[36], pts[37], pts[38], pts[39]])
    below_l = np.stack([pts[42], pts[43], pts[44], pts[45], outer_l])
    pts[RIGHT_BROW] += FOREHEAD_LIFT * (pts[RIGHT_BROW] - below_r)
    pts[LEFT_BROW] += FOREHEAD_LIFT * (pts[LEFT_BROW] - below_l)
    return pts


def _fill_hull(canvas: np.ndarray, points: np.ndarray, value: float, antialias: bool = False) -> None:
    hull = cv2.convexHull(np.round(points * (1 << _SHIFT)).astype(np.int32))
    cv2.fillConvexPoly(
        canvas, hull, (value,), lineType=cv2.LINE_AA if antialias else cv2.LINE_8, shift=_SHIFT
    )


def hull_points(landmarks: np.ndarray) -> np.ndarray:
    """Outline of the extended face hull.

    Args:
        landmarks: :math:`(68, 2)` points in crop pixels.

    Returns:
        :math:`(K, 2)` float64 convex-hull vertices of :func:`extended_points`, in drawing order.
    """
    pts = extended_points(landmarks)
    hull = cv2.convexHull(pts.astype(np.float32))
    return np.asarray(hull.reshape(-1, 2), dtype=np.float64)


def hull_mask(landmarks: np.ndarray, size: int, *, blur: float = 0) -> np.ndarray:
    """Convex hull of the face, forehead included, as a soft mask.

    The hull is taken over the 68 points with the brows lifted (see :func:`extended_points`), so it
    reaches from the jaw line to the lower forehead, like faceswap's "extended" landmark mask. Edges
    are anti-aliased.

    Args:
        landmarks: :math:`(68, 2)` points in pixels of the crop the mask is for.
        size: side of the square crop in pixels.
        blur: standard deviation in pixels of a Gaussian feather applied to the mask (0: none). The
            feather spreads the edge both ways, so values fall below 1 just inside the hull and rise
            above 0 just outside it.

    Returns:
        :math:`(size, size)` float32 mask in :math:`[0, 1]`, 1 inside the face.

    Example:
        >>> pts = transform_points(record.landmarks_array, record.matrix_array)
        >>> mask = hull_mask(pts, record.size, blur=4)  # (384, 384) float32
    """
    pts = _check(landmarks, size)
    canvas = np.zeros((size, size), dtype=np.uint8)
    _fill_hull(canvas, extended_points(pts), 255, antialias=True)
    mask = canvas.astype(np.float32) / 255.0
    if blur > 0:
        mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigmaX=float(blur), borderType=cv2.BORDER_CONSTANT))
    return np.clip(mask, 0.0, 1.0).astype(np.float32, copy=False)


def features_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The brows, eyes, nose and mouth (the hull of points 17-67, grown by ``FEATURE_MARGIN`` times
    the interocular distance, its edge feathered over that margin): the part of the face a swap
    always replaces, whatever a learned mask says.

    Args:
        landmarks: :math:`(68, 2)` points in pixels of the crop the mask is for.
        size: side of the square crop in pixels.

    Returns:
        :math:`(size, size)` float32 mask in :math:`[0, 1]`, zero outside :func:`hull_mask`'s region;
        above 0.97 on the hull of points 17-67.
    """
    pts = _check(landmarks, size)
    margin = FEATURE_MARGIN * interocular(pts)
    grown = _grown_region(size, pts[INNER], margin).astype(np.float32)
    if margin > 0.5:
        grown = np.asarray(cv2.GaussianBlur(grown, (0, 0), margin / 3, borderType=cv2.BORDER_CONSTANT))
    return np.asarray(np.clip(grown, 0.0, 1.0) * hull_mask(pts, size), dtype=np.float32)


def _grown_region(size: int, points: np.ndarray, radius: float) -> np.ndarray:
    region = np.zeros((size, size), dtype=np.uint8)
    _fill_hull(region, points, 1)
    r = round(radius)
    if r > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        region = np.asarray(cv2.dilate(region, kernel), dtype=np.uint8)
    return region.astype(bool)


def region_weights(
    landmarks: np.ndarray, size: int, eye_weight: float = 3.0, mouth_weight: float = 2.0
) -> np.ndarray:
    """Per-pixel loss weights: 1 on the face, more on the eyes and mouth, 0 elsewhere.

    The face is the (hard-edged) :func:`hull_mask` region. Each eye is the convex hull of its six
    points and the mouth the hull of the outer lip (points 48-59), each grown by ``FEATURE_MARGIN``
    times the interocular distance so lids and lips are included and a closed eye still has an
    area. The eye and mouth regions take their weight whatever it is (a weight below 1 de-emphasises
    them); the mouth is applied last.

    Args:
        landmarks: :math:`(68, 2)` points in pixels of the crop the weights are for.
        size: side of the square crop in pixels.
        eye_weight: weight on both eye regions.
        mouth_weight: weight on the mouth region.

    Returns:
        :math:`(size, size)` float32 weights: 0 outside the face, 1 on it, ``eye_weight`` /
        ``mouth_weight`` on the eyes / mouth.

    Example:
        >>> w = region_weights(pts, 384)
        >>> loss = (w[None] * (pred - target).abs()).sum() / w.sum()
    """
    pts = _check(landmarks, size)
    face = np.zeros((size, size), dtype=np.uint8)
    _fill_hull(face, extended_points(pts), 1)
    weights = face.astype(np.float32)
    margin = FEATURE_MARGIN * interocular(pts)
    outer_lip = pts[MOUTH][:12]
    for region_pts, weight in (
        (pts[RIGHT_EYE], eye_weight),
        (pts[LEFT_EYE], eye_weight),
        (outer_lip, mouth_weight),
    ):
        region = _grown_region(size, region_pts, margin)
        weights[region] = weight
    return weights
