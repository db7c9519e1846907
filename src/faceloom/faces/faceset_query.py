"""What a faceset holds, read-only: ids a person can type, missing and stray images, blur relative to
each source, and the summary `faceloom faceset info` prints. Library code: returns data, never prints.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from faceloom.errors import InputError
from faceloom.faces.align import transform_points
from faceloom.faces.faceset import IMAGE_DIR, FaceRecord, Faceset

BLURRY_FRACTION = 0.4
"""Default ``--blurry`` rule: a face whose blur score is below this fraction of its source's median
score. On the GRID and CREMA-D test clips no face is blurred; their lowest scores are blinks at 0.45-0.5
of the median (closed eyes lose edges), while a Gaussian blur of 1.2 px on a 384 px crop already
brings a face to ~0.4 and a visibly soft 1.5 px blur to ~0.25."""

MIN_BLUR_GROUP = 10
"""Sources with fewer faces than this (single images) are pooled for the blur median."""

HISTOGRAM_BIN = 15.0
"""Width in degrees of the yaw / pitch histogram bins."""

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
ORDER_PREFIX = re.compile(r"^\d+_")


# ---- small helpers ------------------------------------------------------------------------------
def crop_landmarks(record: FaceRecord) -> np.ndarray:
    """(68, 2) float32 landmarks of a row in the pixels of its stored crop (``record.size`` px)."""
    return transform_points(record.landmarks_array, record.matrix_array)


def short_id(record: FaceRecord) -> str:
    """Short readable id: ``<file stem>#<frame>`` (plus ``.<k>`` for a frame's k-th face), e.g.
    ``bbaf2n#12``. Shown in previews; accepted by :func:`resolve_ids` where unambiguous."""
    m = re.fullmatch(re.escape(record.source) + r"_(\d+)_(\d+)", record.id)
    if m is None:
        return record.id
    stem = re.sub(r"-[0-9a-f]{6,8}$", "", record.source)
    k = int(m.group(2))
    return f"{stem}#{record.frame}" + (f".{k}" if k else "")


def resolve_ids(fs: Faceset, tokens: Iterable[str]) -> list[str]:
    """Turn what a user typed into face ids, in the order given (duplicates dropped).

    A token may be a full id, a short id (:func:`short_id`), or the image's file name or path as a
    file browser shows it (with or without the order prefix and extension). Raises InputError naming
    every token that matches no face, or more than one.
    """
    exact = {r.id for r in fs.records}
    aliases: dict[str, set[str]] = defaultdict(set)
    for r in fs.records:
        name = PurePosixPath(r.file).name
        for alias in (short_id(r), name, PurePosixPath(name).stem, r.file):
            aliases[alias].add(r.id)
    out: list[str] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for token in tokens:
        token = token.strip()
        if not token:
            continue
        if token in exact:
            found = {token}
        else:
            found = aliases.get(token) or aliases.get(Path(token).name) or set()
            if not found:
                stripped = ORDER_PREFIX.sub("", PurePosixPath(Path(token).name).stem)
                found = {stripped} if stripped in exact else set()
        if not found:
            unknown.append(token)
        elif len(found) > 1:
            ambiguous.append(token)
        else:
            fid = next(iter(found))
            if fid not in out:
                out.append(fid)
    if unknown or ambiguous:
        parts = []
        if unknown:
            parts.append(f"no face with id {', '.join(unknown)}")
        if ambiguous:
            parts.append(f"ambiguous id {', '.join(ambiguous)} (give the full id)")
        raise InputError("; ".join(parts), fs.root)
    return out


def missing_images(fs: Faceset) -> list[FaceRecord]:
    """Rows whose image file does not exist (e.g. deleted by hand in a file browser)."""
    return [r for r in fs.records if not fs.image_path(r).is_file()]


def _image_dirs(fs: Faceset) -> set[Path]:
    return {fs.image_path(r).parent for r in fs.records} | {fs.root / IMAGE_DIR}


def unreferenced_images(fs: Faceset) -> list[Path]:
    """Image files in the faceset's image folder(s) that no row names."""
    referenced = {fs.image_path(r) for r in fs.records}
    out: list[Path] = []
    for folder in sorted(_image_dirs(fs)):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".") and p not in referenced:
                out.append(p)
    return out


def same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


# ---- blur ----------------------------------------------------------------------------------------
def relative_blur(fs: Faceset) -> dict[str, float]:
    """Each face's blur score divided by the median score of its source (id -> ratio).

    Blur scores depend on the footage (the GRID test clips score ~70, CREMA-D ~130), so "blurry" is
    judged against the face's own video. Sources with fewer than ``MIN_BLUR_GROUP`` faces (single
    images) are pooled into one group.
    """
    by_source: dict[str, list[FaceRecord]] = defaultdict(list)
    for r in fs.records:
        by_source[r.source].append(r)
    groups = [rows for rows in by_source.values() if len(rows) >= MIN_BLUR_GROUP]
    small = [r for rows in by_source.values() if len(rows) < MIN_BLUR_GROUP for r in rows]
    if small:
        groups.append(small)
    out: dict[str, float] = {}
    for rows in groups:
        median = float(np.median([r.blur for r in rows]))
        for r in rows:
            out[r.id] = r.blur / median if median > 0 else 1.0
    return out


# ---- info ----------------------------------------------------------------------------------------
def _stats(values: list[float], nd: int = 2) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        "min": round(float(a.min()), nd),
        "max": round(float(a.max()), nd),
        "mean": round(float(a.mean()), nd),
        "median": round(float(np.median(a)), nd),
    }


def _histogram(values: list[float], width: float = HISTOGRAM_BIN) -> list[dict[str, float]]:
    """Counts in bins ``[k*width, (k+1)*width)`` from the lowest to the highest occupied bin."""
    if not values:
        return []
    bins = [math.floor(v / width) for v in values]
    counts: dict[int, int] = defaultdict(int)
    for b in bins:
        counts[b] += 1
    return [
        {"from": k * width, "to": (k + 1) * width, "count": counts.get(k, 0)}
        for k in range(min(bins), max(bins) + 1)
    ]


def _angle_summary(values: list[float]) -> dict[str, Any]:
    return {**(_stats(values) or {}), "bins": _histogram(values)}


def faceset_info(fs: Faceset) -> dict[str, Any]:
    """Everything a user wants to know about a faceset before training on it, as JSON-able data.

    Returns a dict with ``path``, ``crop`` (type, size, image format), ``counts`` (faces, sources,
    tracks, frames read, frames with / without faces, faces with an embedding), ``sources`` (one
    summary per input), ``yaw`` / ``pitch`` (min/max/mean/median and 15-degree ``bins`` of
    ``{from, to, count}``), ``blur`` (score stats and how many faces the default ``--blurry`` rule
    flags), ``face_size`` (bbox side in source pixels), ``missing_images`` (ids of rows whose image
    is gone) and ``unreferenced_images`` (files no row names).

    ``frames_with_faces`` counts the distinct frames in the table now; ``frames_without_faces`` the
    frames extraction found no face in. After removals their sum can be below ``frames``.
    """
    records = fs.records
    sources = fs.sources
    rows_by_source: dict[str, list[FaceRecord]] = defaultdict(list)
    for r in records:
        rows_by_source[r.source].append(r)
    source_list: list[dict[str, Any]] = []
    for key in list(sources) + [k for k in rows_by_source if k not in sources]:
        rows = rows_by_source.get(key, [])
        entry = sources.get(key)
        empty = sum(b - a + 1 for a, b in entry.empty_frames) if entry else 0
        item: dict[str, Any] = {
            "key": key,
            "path": entry.path if entry else None,
            "kind": entry.kind if entry else "unknown",
            "complete": entry.complete if entry else False,
            "frames": entry.frames if entry else 0,
            "faces": len(rows),
            "faces_extracted": entry.faces if entry else len(rows),
            "frames_with_faces": len({r.frame for r in rows}),
            "frames_without_faces": empty,
            "tracks": len({r.track for r in rows}),
        }
        if entry:
            item.update(
                fps=entry.fps,
                width=entry.width,
                height=entry.height,
                stopped_early=entry.stopped_early,
                dropped_by_identity=entry.dropped_by_identity,
                dropped_by_filters=entry.dropped_by_filters,
            )
        source_list.append(item)
    ratios = relative_blur(fs)
    blurry = [r.id for r in records if ratios.get(r.id, 1.0) < BLURRY_FRACTION]
    missing = missing_images(fs)
    return {
        "path": str(fs.root),
        "crop": {"type": fs.crop, "size": fs.size, "format": fs.image_format},
        "counts": {
            "faces": len(records),
            "sources": len(source_list),
            "tracks": len({r.track for r in records}),
            "frames": sum(s["frames"] for s in source_list),
            "frames_with_faces": sum(s["frames_with_faces"] for s in source_list),
            "frames_without_faces": sum(s["frames_without_faces"] for s in source_list),
            "with_embedding": sum(r.embedding is not None for r in records),
        },
        "sources": source_list,
        "yaw": _angle_summary([r.yaw for r in records]),
        "pitch": _angle_summary([r.pitch for r in records]),
        "blur": {
            **(_stats([r.blur for r in records]) or {}),
            "blurry_fraction": BLURRY_FRACTION,
            "blurry": len(blurry),
            "blurry_ids": blurry,
        },
        "face_size": _stats([r.face_size for r in records], 1),
        "missing_images": [r.id for r in missing],
        "unreferenced_images": [str(p.relative_to(fs.root)) for p in unreferenced_images(fs)],
    }
