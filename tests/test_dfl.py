"""The DeepFaceLab ecosystem: DFL's whole_face alignment, `.dfm` export and use, DFL and faceswap
facesets in, on real GRID faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom.faces.align import alignment_matrix, derive_crop, stored_to_crop, transform_points
from faceloom.faces.dfl_template import DFL_TEMPLATE
from faceloom.faces.faceset import Faceset


# ---- DFL's alignment, written again from LandmarksProcessor.get_transform_mat --------------------
def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) similarity src -> dst as DFL's ``umeyama(src, dst, True)``: (3, 3)."""
    n, d = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, t = src - mu_s, dst - mu_d
    cov = t.T @ s / n
    sign = np.ones(d)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    u, sv, vt = np.linalg.svd(cov)
    rot = u @ np.diag(sign) @ vt
    scale = (sv * sign).sum() / s.var(0).sum()
    out = np.eye(3)
    out[:2, :2] = scale * rot
    out[:2, 2] = mu_d - scale * rot @ mu_s
    return out


def dfl_transform_mat(landmarks: np.ndarray, size: int) -> np.ndarray:
    """DFL's get_transform_mat(landmarks, size, FaceType.WHOLE_FACE, scale=1.0)."""
    pts = np.concatenate([landmarks[17:49], landmarks[54:55]])
    mat = _umeyama(pts, np.asarray(DFL_TEMPLATE))
    inv = np.linalg.inv(mat)
    corners = np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)], dtype=np.float64)
    g_p = corners @ inv[:2, :2].T + inv[:2, 2]
    g_c = g_p[4].copy()
    tb = (g_p[2] - g_p[0]) / np.linalg.norm(g_p[2] - g_p[0])
    bt = (g_p[1] - g_p[3]) / np.linalg.norm(g_p[1] - g_p[3])
    padding = 0.40
    mod = np.linalg.norm(g_p[0] - g_p[2]) * (padding * np.sqrt(2.0) + 0.5)
    up = g_p[0] - g_p[3]
    g_c += up / np.linalg.norm(up) * np.linalg.norm(up) * 0.07
    l_t = np.array([g_c - tb * mod, g_c + bt * mod, g_c + tb * mod], dtype=np.float32)
    pts2 = np.float32([(0, 0), (size, 0), (size, size)])
    return np.asarray(cv2.getAffineTransform(l_t, pts2), dtype=np.float64)


@pytest.fixture(scope="module")
def g1(g1_faceset: Path) -> Faceset:
    return Faceset.load(g1_faceset)


def test_dfl_whole_face_crop_is_deepfacelabs(g1: Faceset) -> None:
    """faceloom's dfl_whole_face matrix is DFL's get_transform_mat on the same landmarks, and the
    crop cut from the stored head crop is the one cut from the frame."""
    size = 224
    worst_matrix = worst_pixels = 0.0
    for rec in g1.records[::5]:
        frame_lm = rec.landmarks_array.astype(np.float64)
        ours = alignment_matrix(frame_lm, size, "dfl_whole_face")
        ref = dfl_transform_mat(frame_lm, size)
        # Compare where the matrices send the face's own points (pixels of the crop).
        worst_matrix = max(
            worst_matrix, float(np.abs(transform_points(frame_lm, ours) - transform_points(frame_lm, ref)).max())
        )
        in_stored = transform_points(frame_lm, rec.matrix_array)
        via_stored = stored_to_crop("head", rec.size, "dfl_whole_face", size, in_stored)
        composed = via_stored @ np.vstack([rec.matrix_array, [0.0, 0.0, 1.0]])
        worst_pixels = max(
            worst_pixels,
            float(np.abs(transform_points(frame_lm, composed) - transform_points(frame_lm, ref)).max()),
        )
    # float32 corner points in cv2.getAffineTransform are DFL's; 1e-3 px is that rounding.
    assert worst_matrix < 1e-3, worst_matrix
    assert worst_pixels < 1e-3, worst_pixels
    rec = g1.records[0]
    stored = cv2.cvtColor(cv2.imread(str(g1.image_path(rec))), cv2.COLOR_BGR2RGB)
    in_stored = transform_points(rec.landmarks_array, rec.matrix_array)
    crop = derive_crop(stored, "dfl_whole_face", size, landmarks=in_stored)
    assert crop.shape == (size, size, 3)
    # DFL's whole_face puts the eyes a little above the middle and the mouth in the lower half.
    lm = transform_points(in_stored, stored_to_crop("head", rec.size, "dfl_whole_face", size, in_stored))
    assert 0.3 * size < lm[36:48, 1].mean() < 0.5 * size
    assert 0.55 * size < lm[48:68, 1].mean() < 0.8 * size
    with pytest.raises(ValueError, match="landmarks"):
        derive_crop(stored, "dfl_whole_face", size)
