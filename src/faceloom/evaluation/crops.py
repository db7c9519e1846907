"""Faces through a model, and what is measured on them: crops of the model's type, swaps, identity
embeddings at the known landmark positions (upsampled, background masked: more robust than
re-detecting a small, soft face) and SSIM on one common crop for every architecture."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import torch

from faceloom.config.choices import CropType, Side
from faceloom.faces.align import STORED_CROP, derive_crop, stored_to_crop, transform_points
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.identity import FaceEmbedder
from faceloom.faces.masks import hull_mask
from faceloom.metrics import embedding_distance, id_retrieval
from faceloom.train.models.base import FaceSwapModel

EMBED_SIZE = 256


def record_crop_matrix(
    record: FaceRecord, crop: CropType, resolution: int, stored: CropType = STORED_CROP
) -> np.ndarray:
    """(2, 3) matrix from a face's stored-crop pixels to its ``crop``-type crop of ``resolution`` px."""
    in_stored = transform_points(record.landmarks_array, record.matrix_array)
    return stored_to_crop(stored, record.size, crop, resolution, in_stored)


def crop_landmarks(
    record: FaceRecord, crop: CropType, resolution: int, stored: CropType = STORED_CROP
) -> np.ndarray:
    """(68, 2) landmarks of a face in its ``crop``-type crop of ``resolution`` px."""
    in_stored = transform_points(record.landmarks_array, record.matrix_array)
    matrix = stored_to_crop(stored, record.size, crop, resolution, in_stored)
    return np.asarray(transform_points(in_stored, matrix), dtype=np.float32)


def model_inputs(fs: Faceset, records: list[FaceRecord], crop: CropType, resolution: int) -> np.ndarray:
    """(N, R, R, 3) uint8 crops of the model's type and size, without augmentation."""
    out = []
    stored_crop = cast(CropType, fs.crop)
    for r in records:
        stored = cv2.cvtColor(cv2.imread(str(fs.image_path(r))), cv2.COLOR_BGR2RGB)
        in_stored = transform_points(r.landmarks_array, r.matrix_array)
        out.append(derive_crop(stored, crop, resolution, stored=stored_crop, landmarks=in_stored))
    return np.stack(out)


def model_crops(
    fs: Faceset, records: list[FaceRecord], crop: CropType, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`model_inputs` of ``records`` and their (N, 68, 2) landmarks in those crops."""
    stored = cast(CropType, fs.crop)
    marks = np.stack([crop_landmarks(r, crop, resolution, stored) for r in records])
    return model_inputs(fs, records, crop, resolution), marks


@torch.no_grad()
def swap_faces(
    model: FaceSwapModel, faces: np.ndarray, to: Side, device: str = "cpu", batch: int = 32
) -> np.ndarray:
    """Run (N, R, R, 3) uint8 faces through the encoder and ``to``'s decoder; returns uint8 (N, R, R, 3)."""
    model.eval()
    outs = []
    for i in range(0, len(faces), batch):
        x = torch.from_numpy(faces[i : i + batch]).permute(0, 3, 1, 2).float().div(255).to(device)
        rgb, _ = model(x, to)
        outs.append((rgb.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(outs)


def embed_known_faces(
    faces: np.ndarray, landmarks: np.ndarray, embedder: FaceEmbedder | None = None, size: int = EMBED_SIZE
) -> np.ndarray:
    """dlib embeddings (N, 128) of faces whose landmarks are known, background masked to grey.

    Args:
        faces: (N, R, R, 3) uint8; landmarks: (N, 68, 2) in those crops' pixels.
    """
    embedder = embedder or FaceEmbedder()
    res = faces.shape[1]
    k = size / res
    out = []
    for face, lm in zip(faces, landmarks, strict=True):
        big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        pts = lm * k
        mask = hull_mask(pts, size, blur=2.0)[..., None]
        grey = np.full_like(big, 128)
        masked = (big * mask + grey * (1 - mask)).astype(np.uint8)
        out.append(embedder.embed(masked, pts))
    return np.stack(out)


@dataclass
class IdentityScores:
    to_target: float
    """Mean embedding distance of the swaps to the wanted person's mean embedding (lower is better)."""
    to_source: float
    """Mean distance to the person whose faces went in."""
    retrieval: float
    """Share of swaps closer to the wanted person than to the source person."""


def identity_scores(
    model: FaceSwapModel,
    fs: Faceset,
    records: list[FaceRecord],
    to: Side,
    target_mean: np.ndarray,
    source_mean: np.ndarray,
    device: str = "cpu",
    embedder: FaceEmbedder | None = None,
) -> IdentityScores:
    """Swap ``records`` of one person to ``to`` and score the identity of the results."""
    faces, lms = model_crops(fs, records, model.crop, model.resolution)
    swapped = swap_faces(model, faces, to, device)
    embs = embed_known_faces(swapped, lms, embedder)
    return IdentityScores(
        to_target=float(np.mean(embedding_distance(embs, target_mean))),
        to_source=float(np.mean(embedding_distance(embs, source_mean))),
        retrieval=float(id_retrieval(embs, target_mean, source_mean)),
    )


def to_common_crop(
    outputs: np.ndarray,
    records: list[FaceRecord],
    model_crop: CropType,
    stored: CropType = STORED_CROP,
    size: int = 64,
    common: CropType = "face",
) -> np.ndarray:
    """Resample model outputs (N, R, R, 3) of crop type ``model_crop`` onto the ``common`` crop at
    ``size`` px, so models with different crops and resolutions are scored on the same pixels."""
    res = outputs.shape[1]
    out = []
    for o, r in zip(outputs, records, strict=True):
        to_model = np.vstack([record_crop_matrix(r, model_crop, res, stored), [0.0, 0.0, 1.0]])
        to_common = np.vstack([record_crop_matrix(r, common, size, stored), [0.0, 0.0, 1.0]])
        # common px -> model px
        matrix = np.asarray((to_model @ np.linalg.inv(to_common))[:2], dtype=np.float64)
        scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
        flags = cv2.INTER_AREA if scale > 1.5 else cv2.INTER_LINEAR
        out.append(
            cv2.warpAffine(
                o, matrix, (size, size), flags=flags | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
            )
        )
    return np.stack(out)


def common_holdout_ssim(
    model: FaceSwapModel,
    fs: Faceset,
    records: list[FaceRecord],
    side: Side,
    device: str = "cpu",
    size: int = 64,
) -> float:
    """Masked SSIM of held-out reconstructions on one crop (``face``, 64 px) and one mask (landmark
    hull) for every architecture: the number the time-to-quality benchmark compares."""
    from faceloom.metrics import ssim

    inputs = model_inputs(fs, records, model.crop, model.resolution)
    stored = cast(CropType, fs.crop)
    recon = to_common_crop(swap_faces(model, inputs, side, device), records, model.crop, stored, size)
    # The truth takes the same resampling path, so a perfect reconstruction scores 1 for every model.
    truth = to_common_crop(inputs, records, model.crop, stored, size)
    scores = []
    for r, out, gt in zip(records, recon, truth, strict=True):
        mask = hull_mask(crop_landmarks(r, "face", size, stored), size)
        scores.append(ssim(out, gt, mask=mask))
    return float(np.mean(scores))
