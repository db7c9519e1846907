"""Faceset editing: sorting (renaming images into table order) and removing faces.

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
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import get_args

from faceloom.config import SortKey
from faceloom.errors import InputError, OutputError, output_error_from_os
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.faceset_query import (
    ORDER_PREFIX,
    missing_images,
    relative_blur,
    resolve_ids,
    same_file,
    unreferenced_images,
)
from faceloom.faces.identity import mean_embedding
from faceloom.metrics import embedding_distance

SORT_KEYS: tuple[SortKey, ...] = get_args(SortKey)
SORT_ORDER: dict[SortKey, str] = {
    "yaw": "ascending, faces turned to image left first",
    "pitch": "ascending, faces looking down first",
    "blur": "sharpest first",
    "similarity": "most typical identity first (distance to the mean embedding; no embedding last)",
    "size": "largest face first",
}


def clean_leftover_names(fs: Faceset) -> list[Path]:
    """Delete extra names an interrupted sort left behind; returns the deleted paths.

    Only files that no row names, whose name is ``[<digits>_]<id><ext>`` for the id of a row, and
    that are the same file (same inode, or same bytes for a copy) as that row's image are deleted.
    """
    by_id = fs.by_id()
    removed: list[Path] = []
    for p in unreferenced_images(fs):
        stem = p.stem
        fid = stem if stem in by_id else ORDER_PREFIX.sub("", stem)
        row = by_id.get(fid)
        if row is None:
            continue
        own = fs.image_path(row)
        if own.is_file() and same_file(p, own):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p)
    return removed


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
        if same_file(src, dst):
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
