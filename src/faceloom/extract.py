"""Extraction: videos, images and folders in; an aligned faceset out.

Runs on the shared stage pipeline: decode | detect (+ sideways retry) | align, crop, score, write |
sink (tracking, rows). Work is saved per input file, so a re-run skips inputs already extracted
with the same settings, and an interrupted run loses at most the file it was on.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceloom.config import ExtractConfig
from faceloom.errors import FormatError, InputError
from faceloom.faces.align import STORED_CROP, alignment_matrix, transform_points, warp_crop
from faceloom.faces.detect import FaceDetector, create_detector, detect_with_rotation
from faceloom.faces.faceset import (
    IMAGE_DIR,
    FaceRecord,
    Faceset,
    SourceEntry,
    legacy_file_fingerprint,
    new_source_key,
    to_ranges,
)
from faceloom.faces.identity import FaceEmbedder, mean_embedding
from faceloom.faces.pose import estimate_pose
from faceloom.faces.quality import blur_score
from faceloom.faces.tracking import Tracker
from faceloom.faces.types import DetectedFace
from faceloom.fsutil import content_fingerprint
from faceloom.media.reader import Frame, ReadReport, iter_source, probe_video, read_image
from faceloom.media.sources import MediaSource, collect_sources
from faceloom.media.writer import write_image
from faceloom.metrics import embedding_distance
from faceloom.pipeline import PipelineStats, Stage, run_pipeline
from faceloom.progress import ProgressFn, report


@dataclass
class SourceResult:
    path: Path
    key: str
    skipped: bool
    frames: int = 0
    faces: int = 0
    empty_frames: int = 0
    stopped_early: str | None = None
    dropped_by_identity: int = 0


@dataclass
class ExtractResult:
    faceset: Path
    sources: list[SourceResult]
    stats: PipelineStats | None
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sources if not s.skipped)

    @property
    def faces(self) -> int:
        return sum(s.faces for s in self.sources if not s.skipped)


@dataclass
class _Item:
    src: int
    frame: Frame | None  # None marks the end of source ``src``
    faces: list[DetectedFace] = field(default_factory=list)
    found: list[dict[str, Any]] = field(default_factory=list)
    filtered: int = 0


def reference_embedding(refs: tuple[str, ...], detector: FaceDetector, embedder: FaceEmbedder) -> np.ndarray:
    """Mean embedding of the largest face in each reference image."""
    embs = []
    for ref in refs:
        path = Path(ref)
        if not path.exists():
            raise InputError("identity reference not found", path)
        rgb = read_image(path)
        faces = detect_with_rotation(detector, rgb)
        if not faces:
            raise InputError("no face found in identity reference image", path)
        embs.append(embedder.embed(rgb, faces[0].landmarks))
    return mean_embedding(embs)


def _open_faceset(out: Path, config: ExtractConfig) -> Faceset:
    if Faceset.is_faceset(out):
        fs = Faceset.load(out)
        if fs.size != config.size or fs.image_format != config.image_format:
            raise FormatError(
                f"faceset was extracted at --size {fs.size} as {fs.image_format}; "
                f"extract at --size {config.size} as {config.image_format} into a new folder",
                out,
            )
        return fs
    if out.exists() and out.is_dir() and any(out.iterdir()):
        raise InputError("output folder exists, is not empty and is not a faceset", out)
    return Faceset.create(out, size=config.size, crop=STORED_CROP, image_format=config.image_format)


class _Extraction:
    """State of one extract run; methods are the pipeline's stage functions and sink."""

    def __init__(
        self,
        faceset: Faceset,
        config: ExtractConfig,
        sources: list[MediaSource],
        keys: list[str],
        contents: list[str],
        progress: ProgressFn | None,
        ref: np.ndarray | None,
        embedder: FaceEmbedder | None,
    ) -> None:
        self.fs = faceset
        self.cfg = config
        self.sources = sources
        self.keys = keys
        self.contents = contents
        self.progress = progress
        self.ref = ref
        self.embedder = embedder
        self.reports = [ReadReport() for _ in sources]
        self.totals = [1] * len(sources)
        self.meta: list[dict[str, Any]] = [{} for _ in sources]
        self.rows: dict[int, list[FaceRecord]] = defaultdict(list)
        self.empty: dict[int, list[int]] = defaultdict(list)
        self.filtered: dict[int, int] = defaultdict(int)
        self.frames_seen: dict[int, int] = defaultdict(int)
        self.tracker = Tracker()
        self.track_base = max((r.track for r in faceset.records), default=-1) + 1
        self.results: list[SourceResult] = []
        self.last_save = time.monotonic()
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish")
        self.pending: list[Future[None]] = []
        self.encode_ext = ".jpg" if config.image_format == "jpg" else ".png"

    # ---- feed ---------------------------------------------------------------------------
    def frames(self) -> Iterator[_Item]:
        for i, src in enumerate(self.sources):
            if src.kind == "video":
                info = probe_video(src.path)
                self.totals[i] = max(1, -(-info.frames // self.cfg.every_n))
                self.meta[i] = {"fps": info.fps, "width": info.width, "height": info.height}
            for frame in iter_source(src, self.cfg.every_n, self.reports[i]):
                if src.kind == "image":
                    self.meta[i] = {"width": frame.rgb.shape[1], "height": frame.rgb.shape[0]}
                yield _Item(i, frame)
            yield _Item(i, None)

    # ---- stages -------------------------------------------------------------------------
    def make_detect(self) -> Callable[[_Item], _Item]:
        detector = create_detector(self.cfg.detector, self.cfg.max_faces_per_frame)
        hint = [0]

        def detect(item: _Item) -> _Item:
            if item.frame is None:
                return item
            faces = detect_with_rotation(detector, item.frame.rgb, self.cfg.rotate_retry, hint[0])
            if faces:
                hint[0] = faces[0].rotation
            kept = [f for f in faces if f.size >= self.cfg.min_size]
            item.filtered += len(faces) - len(kept)
            item.faces = kept
            return item

        detect.close = detector.close  # type: ignore[attr-defined]
        return detect

    def align(self, item: _Item) -> _Item:
        if item.frame is None:
            return item
        frame = item.frame
        size = self.cfg.size
        h, w = frame.rgb.shape[:2]
        key = self.keys[item.src]
        for k, face in enumerate(item.faces):
            matrix = alignment_matrix(face.landmarks, size)
            crop = warp_crop(frame.rgb, matrix, size)
            blur = blur_score(crop)
            if blur < self.cfg.blur_threshold:
                item.filtered += 1
                continue
            face_id = f"{key}_{frame.index:06d}_{k}"
            rel = f"{IMAGE_DIR}/{face_id}{self.encode_ext}"
            # Crops of real footage: through the one writer, but not labelled synthetic.
            write_image(self.fs.root / rel, crop, synthetic=False, quality=self.cfg.jpeg_quality)
            item.found.append(
                {
                    "face": face,
                    "id": face_id,
                    "file": rel,
                    "matrix": matrix,
                    "pose": estimate_pose(face.landmarks, (w, h)),
                    "blur": blur,
                }
            )
        return item

    # ---- sink ---------------------------------------------------------------------------
    def sink(self, item: _Item) -> None:
        i = item.src
        if item.frame is None:
            # Embedding the tracks takes ~80 ms a sample: do it beside the next source's frames.
            rows, track_ids = self.rows.pop(i, []), self.tracker.next_id
            self.tracker = Tracker()
            self.pending.append(self.finisher.submit(self.finish_source, i, rows))
            self.track_base += track_ids
            return
        frame = item.frame
        self.frames_seen[i] += 1
        self.filtered[i] += item.filtered
        if not item.found:
            self.empty[i].append(frame.index)
        else:
            boxes = [f["face"].bbox for f in item.found]
            tracks = self.tracker.assign(frame.index, boxes, step=self.cfg.every_n)
            for f, tid in zip(item.found, tracks, strict=True):
                face: DetectedFace = f["face"]
                self.rows[i].append(
                    FaceRecord.create(
                        id=f["id"],
                        file=f["file"],
                        source=self.keys[i],
                        frame=frame.index,
                        time=frame.time,
                        track=self.track_base + tid,
                        bbox=face.bbox,
                        score=face.score,
                        landmarks=face.landmarks,
                        matrix=f["matrix"],
                        size=self.cfg.size,
                        pose=f["pose"],
                        blur=f["blur"],
                        detector=self.cfg.detector,
                        rotation=face.rotation,
                        landmarks_full=face.landmarks_full,
                    )
                )
        # total: an estimate for video (from its duration)
        report(self.progress, str(self.sources[i].path), self.frames_seen[i], self.totals[i])

    def finish_source(self, i: int, rows: list[FaceRecord]) -> None:
        src, key = self.sources[i], self.keys[i]
        dropped = self._identity_pass(rows)
        if dropped:
            drop_ids = {r.id for r in dropped}
            rows = [r for r in rows if r.id not in drop_ids]
            for r in dropped:
                (self.fs.root / r.file).unlink(missing_ok=True)
        report = self.reports[i]
        entry = SourceEntry(
            path=str(src.path.resolve()),
            kind=src.kind,
            fingerprint=self.contents[i],
            settings=self.cfg.output_fingerprint(),
            complete=True,
            frames=self.frames_seen[i],
            faces=len(rows),
            empty_frames=to_ranges(self.empty.pop(i, [])),
            stopped_early=report.stopped_early,
            dropped_by_identity=len(dropped),
            dropped_by_filters=self.filtered.pop(i, 0),
            **self.meta[i],
        )
        self.fs.replace_source_rows(key, rows)
        self.fs.set_source(key, entry)
        self.results.append(
            SourceResult(
                path=src.path,
                key=key,
                skipped=False,
                frames=entry.frames,
                faces=entry.faces,
                empty_frames=sum(b - a + 1 for a, b in entry.empty_frames),
                stopped_early=report.stopped_early,
                dropped_by_identity=len(dropped),
            )
        )
        now = time.monotonic()
        if src.kind == "video" or now - self.last_save > 2.0 or i == len(self.sources) - 1:
            self.fs.save()
            self.last_save = now

    def _identity_pass(self, rows: list[FaceRecord]) -> list[FaceRecord]:
        """Embed each track from a few sampled crops; store the track mean; return rows to drop."""
        if self.embedder is None or not rows:
            return []
        by_track: dict[int, list[FaceRecord]] = defaultdict(list)
        for r in rows:
            by_track[r.track].append(r)
        dropped: list[FaceRecord] = []
        for track_rows in by_track.values():
            # One sample per ~2 s of a 25 fps track, up to identity_samples: a dlib embedding costs
            # ~80 ms and one speaker's frames lie within 0.3 of each other, far inside the 0.6 cut.
            n = min(self.cfg.identity_samples, 1 + len(track_rows) // 50, len(track_rows))
            picks = [track_rows[j] for j in np.linspace(0, len(track_rows) - 1, n).astype(int)]
            embs = []
            for r in picks:
                crop = cv2.cvtColor(cv2.imread(str(self.fs.root / r.file)), cv2.COLOR_BGR2RGB)
                embs.append(self.embedder.embed(crop, transform_points(r.landmarks_array, r.matrix_array)))
            emb = mean_embedding(embs)
            if (
                self.ref is not None
                and float(embedding_distance(emb, self.ref)) > self.cfg.identity_threshold
            ):
                dropped.extend(track_rows)
                continue
            values = [round(float(v), 6) for v in emb]
            for r in track_rows:
                r.embedding = values
        return dropped


def extract(
    inputs: list[str] | list[Path] | list[str | Path],
    out: str | Path,
    config: ExtractConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> ExtractResult:
    """Extract aligned faces from videos, images and image folders into the faceset at ``out``.

    Inputs already extracted into this faceset with the same settings are skipped. Raises
    InputError for a missing or unreadable input, or when an input yields no face at all.
    """
    config = config or ExtractConfig()
    out = Path(out)
    sources = collect_sources([Path(p) for p in inputs])
    fs = _open_faceset(out, config)
    settings = config.output_fingerprint()
    known = fs.sources
    todo: list[MediaSource] = []
    keys: list[str] = []
    contents: list[str] = []
    results: list[SourceResult] = []
    for src in sources:
        content = content_fingerprint(src.path)
        key = fs.find_source(src.path, content)
        entry = known.get(key) if key is not None else None
        if (
            key is not None
            and entry is not None
            and entry.complete
            and entry.settings == settings
            and entry.fingerprint in (content, legacy_file_fingerprint(src.path))
        ):
            results.append(SourceResult(src.path, key, skipped=True, frames=entry.frames, faces=entry.faces))
        elif content not in contents:  # the same file reached twice is extracted once
            todo.append(src)
            keys.append(key if key is not None else new_source_key(src.path, content))
            contents.append(content)
    if not todo:
        return ExtractResult(out, results, None)

    ref = None
    embedder = FaceEmbedder()
    if config.identity_refs:
        probe = create_detector(config.detector, 1)
        try:
            ref = reference_embedding(config.identity_refs, probe, embedder)
        finally:
            probe.close()

    job = _Extraction(fs, config, todo, keys, contents, progress, ref, embedder)
    fs.save()  # the header exists before any image does, so the folder is recognisable at once

    def make_align() -> Callable[[_Item], _Item]:
        return job.align

    stages = [
        Stage("detect", job.make_detect, workers=1, teardown=lambda fn: fn.close()),  # type: ignore[attr-defined]
        Stage("align+write", make_align, workers=2),
    ]
    try:
        stats = run_pipeline(job.frames(), stages, job.sink, cancel=cancel)
    finally:
        job.finisher.shutdown(wait=True)
    for future in job.pending:
        future.result()  # re-raise a failure of the identity pass or the save
    results.extend(job.results)
    warnings = [
        f"{r.path}: {r.stopped_early}; kept the {r.frames} frames before it"
        for r in job.results
        if r.stopped_early
    ]
    faceless = [r for r in job.results if r.faces == 0]
    if faceless and all(r.faces == 0 for r in results):
        first = faceless[0]
        what = (
            "image"
            if len(faceless) == 1 and first.frames == 1
            else f"{sum(r.frames for r in faceless)} frames"
        )
        raise InputError(
            f"no face found in any of the {what} read", first.path if len(faceless) == 1 else inputs[0]
        )
    for r in faceless:
        warnings.append(f"{r.path}: no face found in {r.frames} frame(s)")
    return ExtractResult(out, results, stats, warnings)
