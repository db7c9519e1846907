"""Faceset tools: summary, sorting, removal and a contact-sheet preview.

Library code: every function returns data and never prints; ``faceloom faceset ...`` (cli_faceset.py)
does the printing.

File names and crash safety. Sorting gives each image a zero-padded order prefix
(``faces/00012_<id>.jpg``) so a file browser lists the faces in table order; ids never change. The
table is the only truth, and at every instant it names files that exist:

1. each image gets its new name as a hard link (a copy where the filesystem has no hard links),
2. the table is saved atomically with the new names,
3. the old names are unlinked.

A kill before 2 leaves the old table and extra new-name links; a kill after 2 leaves the new table
and extra old-name links. Either way ``Faceset.load`` reads a consistent faceset, and the next
``sort_faceset`` / ``remove_faces`` deletes the extra names (files not in the table that are the
same file as a row's image and carry its id). ``faceset_info`` lists them as ``unreferenced_images``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from faceloom.config import SortKey
from faceloom.errors import InputError, OutputError, output_error_from_os
from faceloom.faces.align import CROP_REGIONS, CropType, subcrop_box, transform_points
from faceloom.faces.faceset import IMAGE_DIR, FaceRecord, Faceset
from faceloom.faces.identity import mean_embedding
from faceloom.faces.landmarks import JAW, LEFT_BROW, LEFT_EYE, MOUTH, NOSE, RIGHT_BROW, RIGHT_EYE
from faceloom.faces.masks import hull_points
from faceloom.fsutil import atomic_write_bytes, ensure_dir
from faceloom.metrics import embedding_distance

SORT_KEYS: tuple[SortKey, ...] = ("yaw", "pitch", "blur", "similarity", "size")
SORT_ORDER: dict[SortKey, str] = {
    "yaw": "ascending, faces turned to image left first",
    "pitch": "ascending, faces looking down first",
    "blur": "sharpest first",
    "similarity": "most typical identity first (distance to the mean embedding; no embedding last)",
    "size": "largest face first",
}

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
_ORDER_PREFIX = re.compile(r"^\d+_")


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
    stem = re.sub(r"-[0-9a-f]{6}$", "", record.source)
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
                stripped = _ORDER_PREFIX.sub("", PurePosixPath(Path(token).name).stem)
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def clean_leftover_names(fs: Faceset) -> list[Path]:
    """Delete extra names an interrupted sort left behind; returns the deleted paths.

    Only files that no row names, whose name is ``[<digits>_]<id><ext>`` for the id of a row, and
    that are the same file (same inode, or same bytes for a copy) as that row's image are deleted.
    """
    by_id = fs.by_id()
    removed: list[Path] = []
    for p in unreferenced_images(fs):
        stem = p.stem
        fid = stem if stem in by_id else _ORDER_PREFIX.sub("", stem)
        row = by_id.get(fid)
        if row is None:
            continue
        own = fs.image_path(row)
        if own.is_file() and _same_file(p, own):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p)
    return removed


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


# ---- sort ----------------------------------------------------------------------------------------
def _sort_key(fs: Faceset, by: SortKey) -> Callable[[FaceRecord], tuple[float, ...]]:
    if by == "yaw":
        return lambda r: (r.yaw,)
    if by == "pitch":
        return lambda r: (r.pitch,)
    if by == "blur":
        return lambda r: (-r.blur,)
    if by == "size":
        return lambda r: (-r.face_size,)
    if by == "similarity":
        embs = [e for r in fs.records if (e := r.embedding_array) is not None]
        if not embs:
            return lambda r: (0.0,)
        mean = mean_embedding(embs)

        def similarity(r: FaceRecord) -> tuple[float, ...]:
            e = r.embedding_array
            return (1.0, 0.0) if e is None else (0.0, float(embedding_distance(e, mean)))

        return similarity
    raise InputError(f"unknown sort key {by!r}; choose one of {', '.join(SORT_KEYS)}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Give ``src`` the extra name ``dst`` (hard link, else an atomic copy)."""
    if dst.exists():
        if _same_file(src, dst):
            return  # left over from an interrupted sort
        raise OutputError(f"cannot rename {src.name}: another file already has this name", dst)
    try:
        os.link(src, dst)
    except FileExistsError as exc:
        raise OutputError(f"cannot rename {src.name}: another file already has this name", dst) from exc
    except OSError:
        try:
            tmp = dst.with_name(f".{dst.name}.copy.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except OSError as exc:
            raise output_error_from_os(exc, dst) from exc


def sort_faceset(fs: Faceset, by: SortKey) -> list[FaceRecord]:
    """Reorder the table and rename the images so a file browser shows the same order.

    Orders: ``yaw`` / ``pitch`` ascending, ``blur`` sharpest first, ``size`` largest face first,
    ``similarity`` by embedding distance to the faceset's mean embedding (most typical first, rows
    without an embedding last; extraction stores one embedding per track, so faces of a track tie).
    Ties keep their current order, so sorting twice gives the same result.

    Each image is renamed ``<order>_<id><ext>`` (order zero-padded to at least 5 digits; an old
    prefix is replaced); ids do not change. Rows whose image is missing keep their file name. See the
    module docstring for why an interruption loses nothing. Saves the faceset.

    Returns:
        The rows in their new order (also ``fs.records``).
    """
    key = _sort_key(fs, by)
    clean_leftover_names(fs)
    ordered = sorted(fs.records, key=key)
    width = max(5, len(str(max(len(ordered) - 1, 0))))
    renames: list[tuple[FaceRecord, str, str]] = []  # row, old file, new file
    for n, r in enumerate(ordered):
        if not fs.image_path(r).is_file():
            continue
        old = PurePosixPath(r.file)
        new = str(old.parent / f"{n:0{width}d}_{r.id}{old.suffix}")
        if new != r.file:
            renames.append((r, r.file, new))

    linked: list[Path] = []
    try:
        for _r, old_rel, new_rel in renames:
            dst = fs.root / new_rel
            existed = dst.exists()
            _link_or_copy(fs.root / old_rel, dst)
            if not existed:
                linked.append(dst)
        for r, _old, new_rel in renames:
            r.file = new_rel
        previous = fs.records
        fs.records = ordered
        try:
            fs.save()
        except BaseException:
            fs.records = previous
            for r, old_rel, _new in renames:
                r.file = old_rel
            raise
    except BaseException:
        for p in linked:
            with contextlib.suppress(OSError):
                p.unlink()
        raise
    for _r, old_rel, _new in renames:
        with contextlib.suppress(FileNotFoundError):
            (fs.root / old_rel).unlink()
    return ordered


# ---- remove --------------------------------------------------------------------------------------
def faces_to_remove(
    fs: Faceset,
    *,
    ids: Iterable[str] | None = None,
    blurry_below: float | None = None,
    blurry_relative: float | None = None,
    missing: bool = False,
) -> list[FaceRecord]:
    """The rows :func:`remove_faces` would remove with the same arguments, in table order."""
    chosen: set[str] = set()
    if ids is not None:
        chosen.update(resolve_ids(fs, ids))
    if blurry_below is not None:
        chosen.update(r.id for r in fs.records if r.blur < blurry_below)
    if blurry_relative is not None:
        ratios = relative_blur(fs)
        chosen.update(r.id for r in fs.records if ratios[r.id] < blurry_relative)
    if missing:
        chosen.update(r.id for r in missing_images(fs))
    return [r for r in fs.records if r.id in chosen]


def remove_faces(
    fs: Faceset,
    *,
    ids: Iterable[str] | None = None,
    blurry_below: float | None = None,
    blurry_relative: float | None = None,
    missing: bool = False,
) -> list[FaceRecord]:
    """Remove faces from the table and delete their images; returns the removed rows.

    Args:
        fs: the faceset; saved when anything is removed.
        ids: faces to remove, as accepted by :func:`resolve_ids` (full id, short id or file name).
            Unknown ids raise InputError naming them, before anything is removed.
        blurry_below: remove faces whose blur score is below this absolute value.
        blurry_relative: remove faces whose blur score is below this fraction of their source's
            median (:func:`relative_blur`); ``BLURRY_FRACTION`` is the CLI default.
        missing: remove rows whose image file is gone (deleted by hand in a file browser, the
            faceswap way of pruning a faceset).

    The criteria add up: a face matching any of them is removed.
    """
    chosen = faces_to_remove(
        fs, ids=ids, blurry_below=blurry_below, blurry_relative=blurry_relative, missing=missing
    )
    clean_leftover_names(fs)  # before the rows go: afterwards their extra names could not be matched
    if not chosen:
        return []
    return fs.remove({r.id for r in chosen})


# ---- preview -------------------------------------------------------------------------------------
HEADER_H = 22
"""Height in pixels of the legend strip at the top of a preview sheet."""
CAPTION_H = 16
"""Height in pixels of the caption strip under each tile."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR colours
_REGION_COLOURS: list[tuple[slice, tuple[int, int, int]]] = [
    (JAW, (210, 210, 210)),
    (RIGHT_BROW, (0, 190, 255)),
    (LEFT_BROW, (0, 190, 255)),
    (NOSE, (255, 170, 0)),
    (RIGHT_EYE, (0, 255, 0)),
    (LEFT_EYE, (0, 255, 0)),
    (MOUTH, (255, 0, 255)),
]
_HULL_COLOUR = (0, 255, 255)
_BOX_COLOURS: dict[CropType, tuple[int, int, int]] = {"face": (255, 255, 0), "whole_face": (80, 80, 255)}


def sheet_size(n_faces: int, *, columns: int = 8, max_faces: int = 64, tile: int = 160) -> tuple[int, int]:
    """(width, height) in pixels of the sheet :func:`preview_sheet` writes for ``n_faces`` faces."""
    shown = min(n_faces, max_faces)
    cols = max(1, min(columns, shown))
    rows = -(-shown // cols)
    return cols * tile, HEADER_H + rows * (tile + CAPTION_H)


_OUTLINES: list[tuple[slice, bool]] = [
    (JAW, False),
    (RIGHT_BROW, False),
    (LEFT_BROW, False),
    (slice(27, 31), False),
    (slice(31, 36), False),
    (RIGHT_EYE, True),
    (LEFT_EYE, True),
    (slice(48, 60), True),
    (slice(60, 68), True),
]


def _colour_of(index: int) -> tuple[int, int, int]:
    for region, colour in _REGION_COLOURS:
        if region.start <= index < region.stop:
            return colour
    return (255, 255, 255)


def _draw_outlines(img: np.ndarray, pts: np.ndarray) -> None:
    """Thin, dimmed feature outlines through (68, 2) points given in ``img`` pixels."""
    fixed = np.round(pts * 16).astype(np.int32)
    for part, closed in _OUTLINES:
        faded = tuple(int(c * 0.6) for c in _colour_of(part.start))
        cv2.polylines(img, [fixed[part]], closed, faded, 1, cv2.LINE_AA, shift=4)


def _draw_points(img: np.ndarray, pts: np.ndarray) -> None:
    """A small dot on each of the (68, 2) points, coloured by face region."""
    for i, (x, y) in enumerate(np.round(pts * 16).astype(np.int32)):
        cv2.circle(img, (int(x), int(y)), 10, _colour_of(i), -1, cv2.LINE_AA, shift=4)


def _fit_text(text: str, max_w: int, scale: float) -> str:
    """Shorten ``text`` to ``max_w`` pixels by eliding the middle of the part before any ``#``, so a
    short id keeps its frame number (``1001_DFA_ANG_XX#62`` -> ``1001_D..XX#62``)."""

    def width(t: str) -> int:
        return int(cv2.getTextSize(t, _FONT, scale, 1)[0][0])

    if width(text) <= max_w:
        return text
    head, sep, tail = text.rpartition("#")
    stem, suffix = (head, sep + tail) if sep else (text, "")
    for keep in range(len(stem) - 1, 0, -1):
        left = stem[: (keep + 1) // 2]
        right = stem[len(stem) - keep // 2 :] if keep // 2 else ""
        candidate = f"{left}..{right}{suffix}"
        if width(candidate) <= max_w:
            return candidate
    return suffix if width(suffix) <= max_w else text[:1]


def _tile(fs: Faceset, r: FaceRecord, tile: int, draw_landmarks: bool, draw_mask: bool) -> np.ndarray:
    img = cv2.imread(str(fs.image_path(r)), cv2.IMREAD_COLOR)
    out = np.full((tile + CAPTION_H, tile, 3), 32, dtype=np.uint8)
    if img is None:
        cv2.putText(out, "image missing", (6, tile // 2), _FONT, 0.4, (80, 80, 255), 1, cv2.LINE_AA)
    else:
        interp = cv2.INTER_AREA if img.shape[0] > tile else cv2.INTER_CUBIC
        out[:tile] = cv2.resize(img, (tile, tile), interpolation=interp)
        face = out[:tile]
        k = tile / r.size
        stored = fs.crop
        if draw_mask and stored in CROP_REGIONS:
            for wanted, colour in _BOX_COLOURS.items():
                if CROP_REGIONS[wanted].side < CROP_REGIONS[stored].side:
                    x0, y0, side = subcrop_box(stored, tile, wanted)
                    p0 = (round(x0), round(y0))
                    p1 = (round(x0 + side) - 1, round(y0 + side) - 1)
                    cv2.rectangle(face, p0, p1, colour, 1, cv2.LINE_AA)
        pts = crop_landmarks(r).astype(np.float64) * k
        if draw_landmarks:
            _draw_outlines(face, pts)
        if draw_mask:
            hull = np.round(hull_points(pts) * 16).astype(np.int32)
            cv2.polylines(face, [hull], True, _HULL_COLOUR, 1, cv2.LINE_AA, shift=4)
        if draw_landmarks:
            _draw_points(face, pts)
    yaw = f"y{r.yaw:+.0f}"
    scale = 0.36
    yaw_w = cv2.getTextSize(yaw, _FONT, scale, 1)[0][0]
    name = _fit_text(short_id(r), tile - yaw_w - 10, scale)
    base = tile + CAPTION_H - 4
    cv2.putText(out, name, (3, base), _FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)
    cv2.putText(out, yaw, (tile - yaw_w - 3, base), _FONT, scale, (160, 220, 255), 1, cv2.LINE_AA)
    return out


def _header(width: int, title: str, draw_landmarks: bool, draw_mask: bool) -> np.ndarray:
    out = np.full((HEADER_H, width, 3), 16, dtype=np.uint8)
    parts: list[tuple[str, tuple[int, int, int]]] = [(title, (235, 235, 235))]
    if draw_landmarks:
        parts += [
            ("eyes", (0, 255, 0)),
            ("brows", (0, 190, 255)),
            ("nose", (255, 170, 0)),
            ("mouth", (255, 0, 255)),
        ]
    if draw_mask:
        parts += [("mask hull", _HULL_COLOUR)] + [(f"{k} crop", c) for k, c in _BOX_COLOURS.items()]
    x = 6
    for text, colour in parts:
        cv2.putText(out, text, (x, HEADER_H - 7), _FONT, 0.4, colour, 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, _FONT, 0.4, 1)[0][0] + 12
    return out


def preview_sheet(
    fs: Faceset,
    out_path: str | Path,
    *,
    columns: int = 8,
    max_faces: int = 64,
    tile: int = 160,
    draw_landmarks: bool = True,
    draw_mask: bool = True,
) -> Path:
    """Write a contact sheet of the faceset's aligned crops, in table order.

    With more than ``max_faces`` faces, an evenly spaced sample is shown. Each tile is a stored crop
    scaled to ``tile`` px with, optionally, the 68 landmarks (coloured by region) and the mask hull
    outline with the ``face`` / ``whole_face`` training crop boxes; under it a caption with the short
    id (accepted by ``faceset remove --faces``) and the yaw in degrees. A legend strip is on top.
    The size is :func:`sheet_size`.

    Args:
        out_path: ``.png`` (or ``.jpg``) file to write atomically; its folder is created.

    Returns:
        ``out_path`` as a Path.
    """
    if columns < 1 or max_faces < 1 or tile < 48:
        raise ValueError("preview needs columns >= 1, max_faces >= 1 and tile >= 48")
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise OutputError("preview sheet must be a .png or .jpg file", out_path)
    n = len(fs.records)
    if n == 0:
        raise InputError("faceset has no faces to preview", fs.root)
    shown = min(n, max_faces)
    picks = np.unique(np.round(np.linspace(0, n - 1, shown)).astype(int))
    width, height = sheet_size(n, columns=columns, max_faces=max_faces, tile=tile)
    cols = width // tile
    sheet = np.zeros((height, width, 3), dtype=np.uint8)
    title = f"{fs.root.name}: {len(picks)} of {n} faces"
    sheet[:HEADER_H] = _header(width, title, draw_landmarks, draw_mask)
    for i, idx in enumerate(picks):
        row, col = divmod(i, cols)
        y = HEADER_H + row * (tile + CAPTION_H)
        sheet[y : y + tile + CAPTION_H, col * tile : (col + 1) * tile] = _tile(
            fs, fs.records[int(idx)], tile, draw_landmarks, draw_mask
        )
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
    ok, buf = cv2.imencode(suffix, sheet, params)
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on valid arrays
        raise OutputError("could not encode the preview sheet", out_path)
    ensure_dir(out_path.parent)
    atomic_write_bytes(out_path, buf.tobytes())
    return out_path
