"""`faceloom eval`: a trained model's quality in numbers, on the faces the trainer held out.

What is measured (each side's held-out faces as recorded in model.json, never trained on):

- ``reconstruction``: each side's faces through its own decoder; SSIM and PSNR masked to the face
  hull (landmarks, forehead included) at the model's crop and resolution, and ``ssim_common``: SSIM on
  one 64 px ``face`` crop for every architecture (the number the benchmarks compare).
- ``identity``: A's faces through B's decoder (``a_to_b``) and B's through A's (``b_to_a``), embedded
  with dlib at the known landmark positions (upsampled to 256 px, background grey); cosine
  similarity to the wanted person's and to the source person's mean embedding (model.json), their
  difference ``identity_score`` (> 0: closer to the wanted person), and ``id_retrieval``: the share of
  swaps closer (cosine) to the wanted person. ``reference_score`` is, for scale, what the wanted
  person's own held-out faces score at the model's resolution (a swap may score a little higher:
  decoders render an average, very typical face).
- ``sharpness``: facial detail (:mod:`faceloom.evaluation.sharpness`: band-passed luma in the face
  hull, blind to 2-pixel grids) of A's swaps against B's real held-out faces and the other way
  round, as a ratio (1.0: as detailed as the wanted person's real faces at the model's resolution);
  ``reconstruction`` carries the same ratio per face, rebuild over the real face.
- ``pose_expression``: landmarks of each swap and of its input face, both found by the same detector
  (mediapipe by default) on the crop upsampled to 256 px and padded; ``pose_error_deg`` the mean
  absolute yaw/pitch/roll difference (head pose from those landmarks) and
  ``pose_error_interval_deg`` its bootstrap interval over the faces (:mod:`.interval`),
  ``pose_offset_deg`` the mean signed yaw/pitch/roll of swap minus input (an error all swaps share,
  such as a head drawn at the wanted person's usual angle, against one that varies face to face),
  ``landmark_nme`` the mean point distance over the 68 points in units of the input's eye distance
  (it includes the honest change of face shape from one person to the other),
  ``mouth_open_error`` / ``eye_open_error`` the mean absolute difference of the mouth-opening and
  eye-aspect ratios. Faces where either detection fails count in ``failed`` and not in the means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceloom.config import EvalConfig
from faceloom.config.choices import SIDES, DetectorName, Side
from faceloom.errors import FormatError, InputError
from faceloom.evaluation.interval import bootstrap_mean_interval
from faceloom.evaluation.sharpness import detail_energy, grid_energy, sharpness_ratio
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.identity import FaceEmbedder
from faceloom.faces.landmarks import expression_measures
from faceloom.faces.masks import hull_mask
from faceloom.faces.pose import estimate_pose
from faceloom.metrics import (
    SAME_PERSON_DISTANCE,
    angle_differences,
    cosine_similarity,
    embedding_distance,
    id_retrieval,
    landmark_error,
    psnr,
    ssim,
)
from faceloom.progress import ProgressFn

DETECT_SIZE = 256
"""Swaps and inputs are upsampled to this many pixels before landmark detection."""
DETECT_PAD = 0.5
"""...and padded by this share of that size on each side: the face mesh wants some background."""


@dataclass
class HeldOut:
    records: list[FaceRecord]
    info: dict[str, Any]


def _r(v: float, nd: int = 4) -> float | None:
    return round(float(v), nd) if np.isfinite(v) else None


def held_out_faces(meta: dict[str, Any], side: Side, fs: Faceset, config: EvalConfig) -> HeldOut:
    """The faces of ``side`` that model.json says were held out, found in ``fs``.

    With no held-out split (a faceset too small to split, or ``--holdout-share 0``) the training
    faces are used and ``info["leak"]`` is true. Raises InputError when none of the held-out faces
    is in ``fs`` (the wrong faceset).
    """
    split = meta.get("holdout", {}).get(side)
    if split is None:
        raise FormatError(f"model.json records no held-out split for side {side}")
    ids = [str(i) for i in split.get("holdout_ids", [])]
    leak = not ids
    if leak:
        ids = [str(i) for i in split.get("train_ids", [])]
    by_id = fs.by_id()
    records = [by_id[i] for i in ids if i in by_id]
    if ids and not records:
        raise InputError(
            f"none of the model's {len(ids)} held-out faces of {side.upper()} is in this faceset; "
            "pass the faceset the model was trained on",
            fs.root,
        )
    found = len(records)
    if len(records) > config.max_faces:
        rng = np.random.default_rng(config.seed * 2 + (0 if side == "a" else 1))
        keep = np.sort(rng.choice(len(records), size=config.max_faces, replace=False))
        records = [records[i] for i in keep]
    recorded = meta.get("facesets", {}).get(side, {}).get("fingerprint")
    return HeldOut(
        records,
        {
            "mode": split.get("mode"),
            "description": split.get("description"),
            "held_out": len(split.get("holdout_ids", [])),
            "found": found,
            "missing": len(ids) - found,
            "used": len(records),
            "leak": leak,
            "faceset_changed": recorded is not None and recorded != fs.ids_fingerprint(),
        },
    )


def _reference_means(meta: dict[str, Any], fs: dict[Side, Faceset]) -> dict[Side, np.ndarray] | None:
    from faceloom.faces.identity import faceset_mean_embedding

    out: dict[Side, np.ndarray] = {}
    for s in SIDES:
        emb = meta.get("embeddings", {}).get(s)
        if emb is None:
            emb = faceset_mean_embedding(fs[s], meta["holdout"][s]["train_ids"])
        if emb is None:
            return None
        out[s] = np.asarray(emb, dtype=np.float64)
    return out


class _Landmarker:
    """68 landmarks of a small face crop, found on an upsampled, padded copy."""

    def __init__(self, detector: DetectorName) -> None:
        from faceloom.faces.detect import create_detector

        self._det = create_detector(detector, 1)

    def __call__(self, crop: np.ndarray) -> np.ndarray | None:
        """(R, R, 3) uint8 -> (68, 2) landmarks in the crop's pixels, or None."""
        res = crop.shape[0]
        big = cv2.resize(crop, (DETECT_SIZE, DETECT_SIZE), interpolation=cv2.INTER_CUBIC)
        pad = round(DETECT_SIZE * DETECT_PAD)
        canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        faces = self._det.detect(np.ascontiguousarray(canvas))
        if not faces:
            return None
        return np.asarray((faces[0].landmarks - pad) * (res / DETECT_SIZE), dtype=np.float64)

    def close(self) -> None:
        self._det.close()


def reconstruction_scores(
    inputs: np.ndarray, outputs: np.ndarray, landmarks: np.ndarray
) -> dict[str, float | None]:
    """Masked SSIM and PSNR of reconstructions.

    Args:
        inputs, outputs: (N, R, R, 3) uint8; landmarks: (N, 68, 2) in those crops.
    """
    res = inputs.shape[1]
    s, p, d = [], [], []
    for x, y, lm in zip(inputs, outputs, landmarks, strict=True):
        mask = hull_mask(lm, res)
        s.append(ssim(y, x, mask=mask))
        p.append(psnr(y, x, mask=mask))
        d.append(sharpness_ratio(y, x, mask))
    return {
        "ssim": _r(float(np.mean(s))),
        "psnr": _r(float(np.mean(p)), 3),
        "sharpness": _r(float(np.median(d)), 3),
    }


def sharpness_block(
    swaps: np.ndarray, swap_landmarks: np.ndarray, real: np.ndarray, real_landmarks: np.ndarray
) -> dict[str, Any]:
    """Detail of swapped faces against the wanted person's real held-out faces, at the model's size.

    Args:
        swaps, real: (N, R, R, 3) and (M, R, R, 3) uint8; the landmarks (N or M, 68, 2) in them.
    Returns:
        ``swap_detail`` and ``real_detail`` (median :func:`detail_energy` in the landmark hull),
        ``ratio`` (the first over the second: 1.0 is as much detail as the real faces), and the same
        for :func:`grid_energy` (``swap_grid``, ``real_grid``, ``grid_ratio``: well over 1 is a
        2-pixel grid the swaps carry and real faces do not).
    """
    res = swaps.shape[1]

    def median(measure: Any, faces: np.ndarray, landmarks: np.ndarray) -> float:
        per_face = [measure(x, hull_mask(lm, res)) for x, lm in zip(faces, landmarks, strict=True)]
        return float(np.median(per_face))

    made, ref = median(detail_energy, swaps, swap_landmarks), median(detail_energy, real, real_landmarks)
    grid, ref_grid = median(grid_energy, swaps, swap_landmarks), median(grid_energy, real, real_landmarks)
    return {
        "swap_detail": _r(made, 3),
        "real_detail": _r(ref, 3),
        "ratio": _r(made / ref, 3) if ref > 0 else None,
        "swap_grid": _r(grid, 3),
        "real_grid": _r(ref_grid, 3),
        "grid_ratio": _r(grid / ref_grid, 3) if ref_grid > 0 else None,
    }


def identity_block(
    swaps: np.ndarray,
    real_target: np.ndarray | None,
    target_mean: np.ndarray,
    source_mean: np.ndarray,
    others: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Identity numbers of swapped faces' embeddings (N, D) against two mean embeddings (D,);
    ``id_retrieval_all`` counts a swap only when, of every person known (the two and ``others``,
    name -> mean embedding), the wanted one is nearest (dlib's Euclidean distance). An ``others``
    entry within :data:`SAME_PERSON_DISTANCE` of a person before it is that person (another faceset
    of them, see :func:`person_labels`): being nearest to it counts as being nearest to them."""
    cos_t = cosine_similarity(swaps, target_mean)
    cos_s = cosine_similarity(swaps, source_mean)
    out: dict[str, Any] = {
        "faces": int(swaps.shape[0]),
        "cos_to_target": _r(float(cos_t.mean())),
        "cos_to_source": _r(float(cos_s.mean())),
        "identity_score": _r(float((cos_t - cos_s).mean())),
        "id_retrieval": _r(id_retrieval(swaps, target_mean, source_mean, metric="cosine")),
        "dist_to_target": _r(float(embedding_distance(swaps, target_mean).mean())),
        "dist_to_source": _r(float(embedding_distance(swaps, source_mean).mean())),
        "id_retrieval_euclidean": _r(id_retrieval(swaps, target_mean, source_mean, metric="euclidean")),
    }
    known = [target_mean, source_mean, *(others or {}).values()]
    person = np.asarray(person_labels(known))
    dists = np.stack([embedding_distance(swaps, m) for m in known], axis=1)
    out["people"] = len(set(person))
    out["id_retrieval_all"] = _r(float(np.mean(person[np.argmin(dists, axis=1)] == 0)))
    if real_target is not None and len(real_target):
        ref = cosine_similarity(real_target, target_mean) - cosine_similarity(real_target, source_mean)
        out["reference_score"] = _r(float(ref.mean()))
    return out


def person_labels(means: Sequence[np.ndarray]) -> list[int]:
    """A person number for each mean embedding (D,): that of the first one before it within
    :data:`SAME_PERSON_DISTANCE`, else its own index. The first two, the wanted and the replaced
    person, are 0 and 1 whatever their distance."""
    labels = [0, 1][: len(means)]
    for i in range(len(labels), len(means)):
        near = [
            labels[j]
            for j in range(i)
            if float(embedding_distance(means[i], means[j])) < SAME_PERSON_DISTANCE
        ]
        labels.append(near[0] if near else i)
    return labels


def pose_expression_block(inputs: np.ndarray, swaps: np.ndarray, landmarker: _Landmarker) -> dict[str, Any]:
    """Pose and expression kept from the input faces (N, R, R, 3) in their swaps (same shape)."""
    lin, lout = [], []
    failed = 0
    for x, y in zip(inputs, swaps, strict=True):
        li, lo = landmarker(x), landmarker(y)
        if li is None or lo is None:
            failed += 1
            continue
        lin.append(li)
        lout.append(lo)
    out: dict[str, Any] = {"faces": len(inputs), "measured": len(lin), "failed": failed}
    if not lin:
        return out
    li_a, lo_a = np.stack(lin), np.stack(lout)
    size = (inputs.shape[2], inputs.shape[1])
    p_in = np.array([estimate_pose(lm, size) for lm in li_a])
    p_out = np.array([estimate_pose(lm, size) for lm in lo_a])
    offset = angle_differences(p_out, p_in, signed=True)  # (N, 3)
    angle_error = np.abs(offset)
    per_angle = angle_error.mean(axis=0)
    low, high = bootstrap_mean_interval(angle_error.mean(axis=1))
    e_in, e_out = expression_measures(li_a), expression_measures(lo_a)
    out.update(
        pose_error_deg=_r(float(angle_error.mean()), 3),
        pose_error_interval_deg=[_r(low, 3), _r(high, 3)],
        yaw_error_deg=_r(per_angle[0], 3),
        pitch_error_deg=_r(per_angle[1], 3),
        roll_error_deg=_r(per_angle[2], 3),
        pose_offset_deg=[_r(v, 3) for v in offset.mean(axis=0)],
        landmark_nme=_r(landmark_error(lo_a, li_a)),
        mouth_open_error=_r(float(np.abs(e_out["mouth_open"] - e_in["mouth_open"]).mean())),
        eye_open_error=_r(float(np.abs(e_out["eye_open"] - e_in["eye_open"]).mean())),
    )
    return out


def evaluate_model(
    model: Any,
    meta: dict[str, Any],
    fs_a: Faceset,
    fs_b: Faceset,
    config: EvalConfig | None = None,
    embedder: FaceEmbedder | None = None,
    gallery: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Score a model (any weights: trained, or fresh ones to compare) on the held-out faces of model.json.

    Args:
        model: a :class:`~faceloom.train.models.base.FaceSwapModel`.
        meta: its model.json (``ModelDir.meta``): the held-out split and mean embeddings are read here.
        fs_a, fs_b: the facesets of A and B it was trained on.
        gallery: more people's mean embeddings (name -> (128,)) that identity retrieval counts
            against besides A and B.

    Returns:
        ``seed``, ``device``, ``holdout`` (per side: mode, description, held_out, found, missing,
        used, leak, faceset_changed), ``reconstruction`` (per side: faces, ssim, psnr, sharpness
        (median detail of the rebuild over the real face's), ssim_common), ``sharpness`` (per
        direction: :func:`sharpness_block`), ``identity`` and ``pose_expression`` (per direction
        ``a_to_b`` / ``b_to_a``; see the module docstring) and ``warnings``.
    """
    import torch

    from faceloom.evaluation.crops import common_holdout_ssim, embed_known_faces, model_crops, swap_faces
    from faceloom.runtime import resolve_device

    config = config or EvalConfig()
    fs: dict[Side, Faceset] = {"a": fs_a, "b": fs_b}
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model.eval().to(device)
    crop, res = model.crop, model.resolution
    held = {s: held_out_faces(meta, s, fs[s], config) for s in SIDES}
    warnings: list[str] = []
    for s in SIDES:
        info = held[s].info
        if info["leak"]:
            warnings.append(f"model.json holds no faces of {s.upper()} out; scores are on training faces")
        if info["missing"]:
            warnings.append(f"{info['missing']} held-out faces of {s.upper()} are no longer in the faceset")
        if info["faceset_changed"]:
            warnings.append(f"faceset {s.upper()} changed since training (fingerprint differs)")
    crops = {s: model_crops(fs[s], held[s].records, crop, res) for s in SIDES}
    inputs = {s: crops[s][0] for s in SIDES}
    lms = {s: crops[s][1] for s in SIDES}
    recon: dict[str, Any] = {}
    for s in SIDES:
        out = swap_faces(model, inputs[s], s, device)
        recon[s] = {
            "faces": len(held[s].records),
            **reconstruction_scores(inputs[s], out, lms[s]),
            "ssim_common": _r(common_holdout_ssim(model, fs[s], held[s].records, s, device)),
        }
    other: dict[Side, Side] = {"a": "b", "b": "a"}
    swaps = {src: swap_faces(model, inputs[src], other[src], device) for src in SIDES}
    means = _reference_means(meta, fs)
    identity: dict[str, Any] = {}
    if means is None:
        warnings.append("no identity embeddings in the facesets or model.json; identity not measured")
    else:
        labels = person_labels([means["a"], means["b"], *(gallery or {}).values()])
        for name, label in zip(gallery or {}, labels[2:], strict=True):
            if label < 2:
                warnings.append(f"gallery faceset {name} is the same person as {SIDES[label].upper()}")
        embedder = embedder or FaceEmbedder()
        real = {s: embed_known_faces(inputs[s], lms[s], embedder) for s in SIDES}
        for src in SIDES:
            dst = other[src]
            embs = embed_known_faces(swaps[src], lms[src], embedder)
            identity[f"{src}_to_{dst}"] = identity_block(embs, real[dst], means[dst], means[src], gallery)
    sharpness = {
        f"{src}_to_{other[src]}": sharpness_block(swaps[src], lms[src], inputs[other[src]], lms[other[src]])
        for src in SIDES
    }
    pose: dict[str, Any] = {}
    if config.pose:
        landmarker = _Landmarker(config.detector)
        try:
            for src in SIDES:
                pose[f"{src}_to_{other[src]}"] = pose_expression_block(inputs[src], swaps[src], landmarker)
        finally:
            landmarker.close()
    return {
        "seed": config.seed,
        "device": device,
        "holdout": {s: held[s].info for s in SIDES},
        "reconstruction": recon,
        "identity": identity,
        "sharpness": sharpness,
        "pose_expression": pose,
        "warnings": warnings,
    }


def gallery_means(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Mean identity embedding of each faceset, by its folder name (InputError without embeddings)."""
    from faceloom.faces.identity import faceset_mean_embedding

    out: dict[str, np.ndarray] = {}
    for p in paths:
        fs = Faceset.load(p)
        mean = faceset_mean_embedding(fs, [r.id for r in fs.records])
        if mean is None:
            raise InputError("faceset has no identity embeddings (extract it again)", p)
        out[f"{Path(p).name} ({p})"] = np.asarray(mean, dtype=np.float32)
    return out


def evaluate(
    model_dir: str | Path,
    a: str | Path | None = None,
    b: str | Path | None = None,
    *,
    video: str | Path | None = None,
    source: str | Path | None = None,
    config: EvalConfig | None = None,
    progress: ProgressFn | None = None,
    gallery: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Load a model dir and its facesets (from model.json unless given) and score it; with ``video``
    and ``source`` also the flicker and sharpness of a converted video against its source. Identity
    retrieval counts against A, B and each ``gallery`` faceset's person.

    Returns :func:`evaluate_model`'s dict plus ``model`` (dir, architecture, step, resolution, crop),
    ``facesets`` (paths) and ``video`` (see :func:`~faceloom.evaluation.flicker.video_flicker`, or None).
    """
    from faceloom.train.models import load_model

    config = config or EvalConfig()
    if (video is None) != (source is None):
        raise InputError("--video and --source go together: the converted video and the one it came from")
    from faceloom.runtime import resolve_device

    model, mdir = load_model(model_dir, resolve_device(config.device))
    paths: dict[Side, Path] = {}
    given_paths: dict[Side, str | Path | None] = {"a": a, "b": b}
    for s in SIDES:
        given = given_paths[s]
        recorded = mdir.meta.get("facesets", {}).get(s, {}).get("path")
        if given is None and recorded is None:
            raise InputError(f"model.json does not name faceset {s.upper()}; pass --{s}", mdir.root)
        paths[s] = Path(given) if given is not None else Path(recorded)
    result = evaluate_model(
        model,
        mdir.meta,
        Faceset.load(paths["a"]),
        Faceset.load(paths["b"]),
        config,
        gallery=gallery_means(gallery),
    )
    video_result = None
    if video is not None and source is not None:
        from faceloom.evaluation.flicker import video_flicker

        video_result = video_flicker(video, source, config.detector, progress)
        result["warnings"] += video_result.pop("warnings")
    return {
        "model": {
            "dir": str(mdir.root),
            "architecture": mdir.meta.get("architecture"),
            "step": mdir.step,
            "resolution": model.resolution,
            "crop": model.crop,
        },
        "facesets": {s: str(paths[s]) for s in SIDES},
        **result,
        "video": video_result,
    }
