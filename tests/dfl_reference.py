"""What the DFL tests compare against: DeepFaceLab's whole_face alignment written again from
``LandmarksProcessor.get_transform_mat``, and the faceloom command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from faceloom.faces.dfl_template import DFL_TEMPLATE


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
    pts2 = np.array([(0, 0), (size, 0), (size, size)], dtype=np.float32)
    return np.asarray(cv2.getAffineTransform(l_t, pts2), dtype=np.float64)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=600
    )
