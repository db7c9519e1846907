"""Fit the constant tables of faceloom.faces.landmark_tables from real clips.

Runs dlib's 68-point predictor and mediapipe's 478-point mesh on frames of the
clips in ../shared/data and derives:
  * MESH_TO_68: for each iBUG point, three mesh vertices and weights whose
    weighted sum best matches dlib's point (least squares, weights sum to 1);
  * MEAN_FACE_2D: generalised Procrustes mean of dlib's 68 points, scaled so
    the 51 inner points fit a unit box;
  * MEAN_FACE_3D: Procrustes mean of the mesh's 3D points mapped to 68, used
    as the model for head-pose estimation.
Usage: python tools/fit_landmark_tables.py [DATA_DIR] > src/faceloom/faces/landmark_tables.py
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")

import av
import dlib
import mediapipe as mp
import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(src.shape[1])
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[-1, -1] = -1
    r = u @ e @ vt
    scale = float(np.trace(np.diag(sig) @ e) / s.var(0).sum())
    t = mu_d - scale * r @ mu_s
    return scale, r, t


def gpa(shapes: np.ndarray, idx: slice, iters: int = 10) -> np.ndarray:
    mean = shapes[0].copy()
    for _ in range(iters):
        aligned = []
        for sh in shapes:
            sc, r, t = umeyama(sh[idx], mean[idx])
            aligned.append(sc * sh @ r.T + t)
        mean = np.mean(aligned, 0)
        mean -= mean[idx].mean(0)
        mean /= np.sqrt((mean[idx] ** 2).sum(1).mean())
    return mean


MIRROR = (
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)


def symmetrize(shape: np.ndarray) -> np.ndarray:
    """Average a shape with its mirror image (x negated about the centroid, left/right swapped), so
    a frontal face reads as yaw 0 and roll 0 whatever the calibration subjects' own head poses."""
    centered = shape - shape.mean(0)
    mirrored = centered[MIRROR].copy()
    mirrored[:, 0] *= -1
    return (centered + mirrored) / 2 + shape.mean(0)


def main() -> None:
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    models = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]  # type: ignore[union-attr]
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(os.path.join(models, "models", "shape_predictor_68_face_landmarks.dat"))
    fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    dl, me = [], []
    for path in sorted(glob.glob(os.path.join(data, "*", "*"))):
        if path.endswith((".md", ".txt")):
            continue
        with av.open(path) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i % 3:
                    continue
                upright = fr.to_ndarray(format="rgb24")
                # Mirrored copies too, so the fitted mapping has no left/right bias.
                for img in (np.ascontiguousarray(upright), np.ascontiguousarray(upright[:, ::-1])):
                    rects = det(img, 0)
                    res = fm.process(img)
                    if len(rects) != 1 or not res.multi_face_landmarks:
                        continue
                    h, w = img.shape[:2]
                    dl.append([[p.x, p.y] for p in sp(img, rects[0]).parts()])
                    me.append([[p.x * w, p.y * h, p.z * w] for p in res.multi_face_landmarks[0].landmark])
    d, m = np.array(dl, float), np.array(me, float)
    iod = np.linalg.norm(d[:, 36:42].mean(1) - d[:, 42:48].mean(1), axis=1)
    dist = np.linalg.norm(d[:, :, None, :] - m[:, None, :, :2], axis=3).mean(0) / iod.mean()
    idx_rows, w_rows = [], []
    for i in range(68):
        cand = np.argsort(dist[i])[:8]
        best = (np.inf, (int(cand[0]),) * 3, np.array([1.0, 0.0, 0.0]))
        target = d[:, i] / iod[:, None]
        for comb in itertools.combinations(cand, 3):
            p = m[:, list(comb), :2] / iod[:, None, None]
            a = (p[:, :-1] - p[:, -1:]).transpose(0, 2, 1).reshape(-1, 2)
            b = (target - p[:, -1]).reshape(-1)
            wt, *_ = np.linalg.lstsq(a, b, rcond=None)
            wt = np.append(wt, 1 - wt.sum())
            if (wt < -0.1).any() or (wt > 1.1).any():
                continue
            err = np.linalg.norm((p * wt[None, :, None]).sum(1) - target, axis=1).mean()
            if err < best[0]:
                best = (err, tuple(int(c) for c in comb), wt)
        idx_rows.append(best[1])
        w_rows.append(best[2])
    idx_a, w_a = np.array(idx_rows), np.array(w_rows)
    m68 = (m[:, idx_a, :] * w_a[None, :, :, None]).sum(2)
    inner = slice(17, 68)
    mean2 = symmetrize(gpa(d, inner))
    lo, hi = mean2[inner].min(0), mean2[inner].max(0)
    scale = 1.0 / (hi - lo).max()
    mean2 = (mean2 - (lo + hi) / 2) * scale + 0.5
    mean3 = symmetrize(gpa(m68, inner))
    mean3 *= 100.0
    print(f'"""Generated by tools/fit_landmark_tables.py from {len(d)} frames (and mirror images) of')
    print('../shared/data; do not edit."""')
    print()
    print("MESH_TO_68_INDEX: tuple[tuple[int, int, int], ...] = (")
    for row in idx_a:
        print(f"    ({row[0]}, {row[1]}, {row[2]}),")
    print(")")
    print("MESH_TO_68_WEIGHT: tuple[tuple[float, float, float], ...] = (")
    for row in w_a:
        print(f"    ({row[0]:.4f}, {row[1]:.4f}, {row[2]:.4f}),")
    print(")")
    print("MEAN_FACE_2D: tuple[tuple[float, float], ...] = (")
    for row in mean2:
        print(f"    ({row[0]:.5f}, {row[1]:.5f}),")
    print(")")
    print("MEAN_FACE_3D: tuple[tuple[float, float, float], ...] = (")
    for row in mean3:
        print(f"    ({row[0]:.3f}, {row[1]:.3f}, {row[2]:.3f}),")
    print(")")


if __name__ == "__main__":
    main()
