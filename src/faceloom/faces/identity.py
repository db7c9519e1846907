"""Identity embeddings (dlib's 128-d face recognition model) and distances between them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from faceloom.faces.detect_dlib import dlib_model_path, dlib_shape

if TYPE_CHECKING:
    from faceloom.faces.faceset import Faceset


class FaceEmbedder:
    """128-d embedding of a face given the image and its 68 landmarks in that image.

    Distances (Euclidean) under ~0.6 mean the same person: on the GRID and CREMA-D clips, frames
    of one speaker lie 0.13-0.27 apart and different speakers 0.68-1.03.
    """

    def __init__(self) -> None:
        import dlib

        self._model = dlib.face_recognition_model_v1(
            dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
        )

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Args: rgb (H, W, 3) uint8; landmarks (68, 2) in that image. Returns (128,) float32."""
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        return np.asarray(self._model.compute_face_descriptor(img, dlib_shape(landmarks)), dtype=np.float32)


def mean_embedding(embeddings: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Mean of (N, 128) embeddings."""
    return np.asarray(np.mean(np.asarray(embeddings, dtype=np.float32), axis=0), dtype=np.float32)


def faceset_mean_embedding(fs: Faceset, ids: list[str]) -> list[float] | None:
    """Mean identity embedding of the faces ``ids`` of a faceset (for model.json), or None when they
    have no embeddings."""
    wanted = set(ids)
    embs = [
        np.asarray(r.embedding, dtype=np.float32)
        for r in fs.records
        if r.embedding is not None and r.id in wanted
    ]
    return [round(float(v), 6) for v in mean_embedding(embs)] if embs else None
