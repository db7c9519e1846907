"""A general face prior: one model trained on the faces of many people, for ``--init-from``."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from faceloom.config import TrainConfig
from faceloom.errors import InputError
from faceloom.faces.faceset import IMAGE_DIR, Faceset
from faceloom.progress import ProgressFn
from faceloom.train.trainer import TrainResult, train


def merge_facesets(dirs: list[Path], out: Path) -> Faceset:
    """One faceset holding the faces of all ``dirs`` (images hard-linked where possible)."""
    sets = [Faceset.load(d) for d in dirs]
    first = sets[0]
    for fs in sets[1:]:
        if (fs.crop, fs.size) != (first.crop, first.size):
            raise InputError(
                f"faceset is {fs.crop} {fs.size}px, the first is {first.crop} {first.size}px", fs.root
            )
    merged = Faceset.load(out) if Faceset.is_faceset(out) else None
    if merged is not None and len(merged.records) == sum(len(fs.records) for fs in sets):
        return merged
    shutil.rmtree(out, ignore_errors=True)
    merged = Faceset.create(out, size=first.size, crop=first.crop, image_format=first.image_format)
    track_base = 0
    for n, fs in enumerate(sets):
        for key, entry in fs.sources.items():
            merged.set_source(f"{n}-{key}", entry)
        for r in fs.records:
            rel = f"{IMAGE_DIR}/{n}-{Path(r.file).name}"
            try:
                os.link(fs.image_path(r), out / rel)
            except OSError:
                shutil.copy2(fs.image_path(r), out / rel)
            merged.records.append(
                replace(r, id=f"{n}-{r.id}", file=rel, source=f"{n}-{r.source}", track=r.track + track_base)
            )
        track_base += max((r.track for r in fs.records), default=-1) + 1
    merged.save()
    return merged


def pretrain(
    faces: list[Path],
    out: Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train both decoders on the pooled faces of many people; the result starts new pairs cheaply."""
    if not faces:
        raise InputError("give at least one faceset with --faces")
    pool = out.parent / f".{out.name}-pool"
    merged = merge_facesets(faces, pool)
    return train(merged.root, merged.root, out, config, resume=resume, progress=progress)
