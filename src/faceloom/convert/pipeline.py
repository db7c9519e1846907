"""Convert: swap one person's faces through a video, an image or a folder of images.

A video runs on the shared stage pipeline in chunks of frames, every stage overlapping the others:

    decode | detect + track + smooth + align | predict (batched) | mask + colour + blend | encode

Only faces of the source person are swapped (``--to b`` swaps A's faces for B's): each new track is
embedded once and compared with the person's mean embedding stored in model.json; other people are
left alone. Memory stays flat: queues hold a few chunks whatever the length of the video.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from faceloom.config import ConvertConfig, SideChoice
from faceloom.convert.blend import paste_face, sharpen, soften_mask
from faceloom.convert.color import match_color
from faceloom.convert.smoothing import TrackSmoother
from faceloom.errors import FormatError, InputError, OutputError
from faceloom.faces.align import alignment_matrix, transform_points, warp_crop
from faceloom.faces.detect import FaceDetector, create_detector, detect_with_rotation
from faceloom.faces.faceset import Faceset, source_key
from faceloom.faces.identity import FaceEmbedder
from faceloom.faces.masks import hull_mask
from faceloom.faces.tracking import Tracker
from faceloom.media.reader import Frame, ReadReport, iter_source, iter_video, probe_video
from faceloom.media.sources import MediaSource, collect_sources
from faceloom.media.writer import IMAGE_SUFFIXES, FrameFilter, VideoWriter, write_image
from faceloom.metrics import embedding_distance
from faceloom.pipeline import PipelineStats, Stage, run_pipeline
from faceloom.train.models.base import FaceSwapModel

ProgressFn = Callable[[int, int], None]
"""progress(frames_done, frames_total)."""

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi"})


@dataclass
class FaceJob:
    """One face of one frame on its way through the stages.

    Attributes:
        matrix: (2, 3) frame -> model crop.
        landmarks: (68, 2) in model-crop pixels.
        crop: (R, R, 3) uint8 model input; ``new`` the model output, ``mask`` its learned mask.
    """

    track: int
    matrix: np.ndarray
    landmarks: np.ndarray
    crop: np.ndarray
    new: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class FrameJob:
    index: int
    time: float
    rgb: np.ndarray
    faces: list[FaceJob] = field(default_factory=list)
    found: int = 0  # faces detected, swapped or not
    out: np.ndarray | None = None


@dataclass
class ConvertResult:
    output: Path
    frames: int
    frames_with_swaps: int
    faces_swapped: int
    faces_left_alone: int
    stats: PipelineStats | None
    audio: str | None = None
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ the model


class Swapper:
    """The model side of conversion: loads MODEL_DIR, runs batches through one decoder."""

    def __init__(self, model_dir: str | Path, config: ConvertConfig) -> None:
        from faceloom.runtime import resolve_device
        from faceloom.train.trainer import load_model, resolve_precision

        self.device = resolve_device(config.device)
        self.model: FaceSwapModel
        self.model, self.mdir = load_model(model_dir, self.device)
        self.to: SideChoice = config.to
        self.source: SideChoice = "a" if config.to == "b" else "b"
        self.resolution = self.model.resolution
        self.crop_type = self.model.crop
        self.dtype = resolve_precision(config.precision, torch.device(self.device))
        if config.mask in ("learned", "both") and not self.model.has_mask:
            raise FormatError(
                f"--mask {config.mask} needs a model with a learned mask; "
                f"{self.mdir.meta['architecture']} has none (use --mask hull or segment)",
                self.mdir.root,
            )
        # channels_last measured slower here with bf16 for original and loom (102 vs 80 faces/s).
        embeddings = self.mdir.meta.get("embeddings") or {}
        self.embeddings: dict[str, np.ndarray | None] = {
            s: (np.asarray(embeddings[s], dtype=np.float32) if embeddings.get(s) else None)
            for s in ("a", "b")
        }

    @torch.no_grad()
    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Args: crops (N, R, R, 3) uint8. Returns faces (N, R, R, 3) uint8 and masks (N, R, R) float32."""
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        if self.dtype is not None:
            with torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype):
                rgb, mask = self.model(x, self.to)
        else:
            rgb, mask = self.model(x, self.to)
        faces = (rgb.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        masks = mask.float().clamp(0, 1)[:, 0].cpu().numpy() if mask is not None else None
        return np.ascontiguousarray(faces), masks


# ---------------------------------------------------------------------------------- face finding


class FaceFinder:
    """Detect (or look up), track, pick the source person, smooth and align faces of a frame stream.

    Not thread-safe: tracking and smoothing follow frame order, so one instance runs in one thread.
    """

    def __init__(
        self,
        swapper: Swapper,
        config: ConvertConfig,
        *,
        faceset: Faceset | None = None,
        faceset_key: str | None = None,
        track_faces: bool = True,
    ) -> None:
        self.cfg = config
        self.swapper = swapper
        self.detector: FaceDetector | None = None
        self.rows: dict[int, list[Any]] = {}
        if faceset is not None:
            for r in faceset.records:
                if r.source == faceset_key:
                    self.rows.setdefault(r.frame, []).append(r)
        self.use_faceset = faceset is not None
        self.tracker = Tracker()
        self.track_faces = track_faces
        self.smoother = TrackSmoother(config.smooth if track_faces else 0.0)
        self.embedder: FaceEmbedder | None = None
        self.decisions: dict[int, bool] = {}
        self.track_offset = 0
        self.looks_like_target = 0  # tracks that look like the person being rendered
        self.left_alone = 0
        self.rotation_hint = 0
        self.smoother_tracks: set[int] = set()

    def _faces(self, rgb: np.ndarray, index: int) -> list[tuple[np.ndarray, tuple[float, ...], int | None]]:
        """(landmarks, bbox, track id or None) of each face in the frame."""
        if self.use_faceset:
            return [(r.landmarks_array, tuple(r.bbox), r.track) for r in self.rows.get(index, [])]
        if self.detector is None:
            self.detector = create_detector(self.cfg.detector)
        faces = detect_with_rotation(self.detector, rgb, True, self.rotation_hint)
        if faces:
            self.rotation_hint = faces[0].rotation
        return [(f.landmarks, f.bbox, None) for f in faces if f.size >= self.cfg.min_size]

    def _is_source_person(self, track: int, rgb: np.ndarray, landmarks: np.ndarray) -> bool:
        decided = self.decisions.get(track)
        if decided is not None:
            return decided
        src = self.swapper.embeddings[self.swapper.source]
        if self.cfg.all_faces or src is None:
            self.decisions[track] = True
            return True
        if self.embedder is None:
            self.embedder = FaceEmbedder()
        emb = self.embedder.embed(rgb, landmarks)
        d_src = float(embedding_distance(emb, src))
        dst = self.swapper.embeddings[self.swapper.to]
        d_dst = float(embedding_distance(emb, dst)) if dst is not None else float("inf")
        keep = d_src <= self.cfg.identity_threshold
        if not keep and d_dst <= self.cfg.identity_threshold and d_dst < d_src:
            self.looks_like_target += 1
        self.decisions[track] = keep
        return keep

    def __call__(self, job: FrameJob) -> FrameJob:
        found = self._faces(job.rgb, job.index)
        job.found = len(found)
        if not found:
            return job
        if self.track_faces:
            boxes = [(b[0], b[1], b[2], b[3]) for _, b, _ in found]
            ids = (
                [t if t is not None else -1 for _, _, t in found]
                if self.use_faceset
                else self.tracker.assign(job.index, boxes)
            )
            if not self.use_faceset:
                for ended in self.smoother_tracks - self.tracker.live_ids():
                    self.smoother.drop(ended)
                self.smoother_tracks = set(ids)
        else:
            ids = list(range(self.track_offset, self.track_offset + len(found)))
            self.track_offset += len(found)
        res, crop = self.swapper.resolution, self.swapper.crop_type
        for (landmarks, _, _), track in zip(found, ids, strict=True):
            if not self._is_source_person(track, job.rgb, landmarks):
                self.left_alone += 1
                continue
            smoothed = self.smoother.smooth(track, landmarks, job.time) if self.track_faces else landmarks
            matrix = alignment_matrix(smoothed, res, crop)
            job.faces.append(
                FaceJob(
                    track=track,
                    matrix=matrix,
                    landmarks=transform_points(landmarks, matrix),
                    crop=warp_crop(job.rgb, matrix, res),
                )
            )
        return job

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


# ------------------------------------------------------------------------------------- blending


class Blender:
    """Mask, colour-match, sharpen and paste the new faces into their frames (one per thread)."""

    def __init__(self, config: ConvertConfig, has_mask: bool, out_size: tuple[int, int] | None) -> None:
        self.cfg = config
        mask = config.mask
        if mask == "auto":
            mask = "learned" if has_mask else "hull"
        self.mask_kind = mask
        self.out_size = out_size
        self.segmenter: Any = None
        if mask in ("segment", "both"):
            from faceloom.convert.segment import Segmenter

            self.segmenter = Segmenter()

    def face_mask(self, face: FaceJob) -> np.ndarray:
        """(R, R) float32 mask of where the new face goes."""
        size = face.crop.shape[0]
        if self.mask_kind == "hull" or (self.mask_kind == "both" and face.mask is None):
            mask = hull_mask(face.landmarks, size)
        elif self.mask_kind in ("learned", "both"):
            assert face.mask is not None
            # The learned mask may spill over the crop edge; the hull (grown) bounds it.
            mask = face.mask
        else:
            mask = hull_mask(face.landmarks, size)
        if self.segmenter is not None:
            mask = mask * self.segmenter.face_mask(face.crop)
        return np.asarray(mask, dtype=np.float32)

    def __call__(self, job: FrameJob) -> FrameJob:
        original = job.rgb
        frame = job.rgb.copy() if self.cfg.side_by_side else job.rgb
        for face in job.faces:
            if face.new is None:
                continue
            mask = soften_mask(self.face_mask(face), erode=self.cfg.erode, blur=self.cfg.blur)
            new = match_color(face.new, face.crop, mask, self.cfg.color)
            if self.cfg.sharpen > 0:
                new = sharpen(new, self.cfg.sharpen)
            frame = paste_face(frame, new, mask, face.matrix, self.cfg.blend)
        out = np.hstack([original, frame]) if self.cfg.side_by_side else frame
        if self.out_size is not None and (out.shape[1], out.shape[0]) != self.out_size:
            out = cv2.resize(out, self.out_size, interpolation=cv2.INTER_AREA)
        job.out = out
        # The source frame is not needed past this point; drop it so queues hold one copy.
        job.faces = [FaceJob(f.track, f.matrix, f.landmarks, f.crop[:0]) for f in job.faces]
        return job

    def close(self) -> None:
        if self.segmenter is not None:
            self.segmenter.close()


def output_filters(config: ConvertConfig) -> list[FrameFilter]:
    """The provenance filters every converted frame goes through."""
    from faceloom.provenance import visible_label_filter, watermark_filter

    filters: list[FrameFilter] = []
    if config.label == "visible":
        filters.append(visible_label_filter())
    if config.watermark:
        filters.append(watermark_filter())
    return filters


def _out_size(width: int, height: int, config: ConvertConfig) -> tuple[int, int] | None:
    w = width * (2 if config.side_by_side else 1)
    if config.scale == 1.0:
        return None
    return max(2, round(w * config.scale / 2) * 2), max(2, round(height * config.scale / 2) * 2)


def _predict_chunk(swapper: Swapper, chunk: list[FrameJob]) -> list[FrameJob]:
    faces = [f for job in chunk for f in job.faces]
    if faces:
        new, masks = swapper.predict(np.stack([f.crop for f in faces]))
        for k, f in enumerate(faces):
            f.new = new[k]
            f.mask = masks[k] if masks is not None else None
    return chunk


# ------------------------------------------------------------------------------------ the runner


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputError("exists; pass --overwrite to replace it", out)
    if out.exists() and out.is_dir() != (out.suffix == ""):
        raise OutputError("exists and is of another kind (file vs folder)", out)


def _load_faceset(path: Path | None, video: Path) -> tuple[Faceset | None, str | None]:
    if path is None:
        return None, None
    fs = Faceset.load(path)
    key = source_key(video)
    if key not in fs.sources:
        raise InputError(f"faceset holds no faces of {video.name}; extract that video into it first", path)
    return fs, key


def convert(
    input: str | Path,
    model_dir: str | Path,
    output: str | Path,
    config: ConvertConfig | None = None,
    *,
    faceset: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> ConvertResult:
    """Swap faces through ``input`` (a video, an image or a folder of images) into ``output``.

    Raises:
        InputError: missing, unreadable or faceless input; OutputError: output exists or cannot be
        written; FormatError: a model dir of another version or an unusable mask choice.
    """
    config = config or ConvertConfig()
    src, out = Path(input), Path(output)
    if not src.exists():
        raise InputError("not found", src)
    sources = collect_sources([src])
    _check_output(out, overwrite)
    swapper = Swapper(model_dir, config)
    if src.is_dir() or sources[0].kind == "image":
        if faceset is not None:
            raise InputError("--faceset is for video input", faceset)
        return _convert_images(sources, src, out, swapper, config, progress, cancel)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"video output must end in one of {', '.join(sorted(VIDEO_SUFFIXES))}", out)
    return _convert_video(
        sources[0].path, out, swapper, config, Path(faceset) if faceset else None, progress, cancel
    )


def _chunks(
    frames: Iterator[Frame], size: int, start: float | None, end: float | None
) -> Iterator[list[Any]]:
    chunk: list[FrameJob] = []
    for f in frames:
        if start is not None and f.time < start - 1e-6:
            continue
        if end is not None and f.time >= end - 1e-6:
            break
        chunk.append(FrameJob(f.index, f.time, f.rgb))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _convert_video(
    src: Path,
    out: Path,
    swapper: Swapper,
    config: ConvertConfig,
    faceset_path: Path | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> ConvertResult:
    info = probe_video(src)
    fs, key = _load_faceset(faceset_path, src)
    report = ReadReport()
    finder = FaceFinder(swapper, config, faceset=fs, faceset_key=key)
    out_size = _out_size(info.width, info.height, config)
    size = out_size or (info.width * (2 if config.side_by_side else 1), info.height)
    total = info.frames
    if config.start is not None or config.end is not None:
        t0, t1 = config.start or 0.0, config.end if config.end is not None else info.duration
        total = max(1, round((min(t1, info.duration) - t0) * info.fps))
    counts = {"frames": 0, "with_swaps": 0, "swapped": 0, "empty": 0}
    blenders: list[Blender] = []

    def make_blender() -> Callable[[list[FrameJob]], list[FrameJob]]:
        blender = Blender(config, swapper.model.has_mask, out_size)
        blenders.append(blender)

        def blend(chunk: list[FrameJob]) -> list[FrameJob]:
            return [blender(job) for job in chunk]

        return blend

    stages = [
        Stage("detect+align", lambda: lambda chunk: [finder(job) for job in chunk]),
        Stage("predict", lambda: lambda chunk: _predict_chunk(swapper, chunk)),
        Stage("blend", make_blender, workers=2),
    ]
    writer = VideoWriter(
        out,
        fps=info.fps,
        size=size,
        audio_from=src,
        codec=config.codec,
        crf=config.crf,
        start_time=config.start,
        end_time=config.end,
        frame_filters=output_filters(config),
        label_extra={"model": swapper.mdir.meta.get("architecture", "?"), "to": config.to},
        codec_options={"preset": config.preset} if config.codec in ("libx264", "libx265") else None,
    )

    def sink(chunk: list[FrameJob]) -> None:
        for job in chunk:
            assert job.out is not None
            writer.write(job.out, job.time)
            counts["frames"] += 1
            counts["with_swaps"] += bool(job.faces)
            counts["swapped"] += len(job.faces)
            counts["empty"] += job.found == 0
        if progress is not None:
            progress(counts["frames"], total)

    frames = iter_video(src, report=report)
    try:
        with writer:
            stats = run_pipeline(
                _chunks(frames, config.batch_size, config.start, config.end),
                stages,
                sink,
                queue_size=2,
                cancel=cancel,
            )
    finally:
        finder.close()
        for b in blenders:
            b.close()
    warnings = list(writer.warnings)
    if report.stopped_early:
        warnings.append(f"{src}: {report.stopped_early}; converted the {counts['frames']} frames before it")
    elif config.start is None and config.end is None and counts["frames"] < 0.97 * info.frames - 1:
        warnings.append(
            f"{src}: the video ends after frame {counts['frames'] - 1} of the {info.frames} its header "
            f"announces (truncated?); converted the {counts['frames']} frames it holds"
        )
    if counts["swapped"] == 0:
        warnings.append(
            f"{src}: no face of the source person in {counts['frames']} frames "
            f"({counts['empty']} without any face); the video was copied through unchanged"
        )
    if finder.looks_like_target:
        other = "a" if config.to == "b" else "b"
        warnings.append(
            f"{src}: {finder.looks_like_target} face track(s) look like person {config.to.upper()}, "
            f"the person being rendered; did you mean --to {other}?"
        )
    return ConvertResult(
        output=out,
        frames=counts["frames"],
        frames_with_swaps=counts["with_swaps"],
        faces_swapped=counts["swapped"],
        faces_left_alone=finder.left_alone,
        stats=stats,
        audio=writer.audio_mode,
        warnings=warnings,
    )


def _convert_images(
    sources: list[MediaSource],
    src: Path,
    out: Path,
    swapper: Swapper,
    config: ConvertConfig,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> ConvertResult:
    single = not src.is_dir()
    if single and out.suffix.lower() not in IMAGE_SUFFIXES:
        raise OutputError(f"image output must end in one of {', '.join(sorted(IMAGE_SUFFIXES))}", out)
    if not single and out.suffix:
        raise OutputError("the output of a folder of images is a folder (no file suffix)", out)
    images = [s for s in sources if s.kind == "image"]
    if not images:
        raise InputError("no images found", src)
    finder = FaceFinder(swapper, config, track_faces=False)
    blender = Blender(config, swapper.model.has_mask, None)
    filters = output_filters(config)
    counts = {"swapped": 0, "with_swaps": 0}
    try:
        for n, source in enumerate(images):
            if cancel is not None and cancel.is_set():
                break
            frame = next(iter_source(source))
            job = finder(FrameJob(0, 0.0, frame.rgb))
            job = blender(_predict_chunk(swapper, [job])[0])
            assert job.out is not None
            out_size = _out_size(job.rgb.shape[1], job.rgb.shape[0], config)
            img = job.out if out_size is None else cv2.resize(job.out, out_size, interpolation=cv2.INTER_AREA)
            target = out if single else out / source.path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, img, frame_filters=filters)
            counts["swapped"] += len(job.faces)
            counts["with_swaps"] += bool(job.faces)
            if progress is not None:
                progress(n + 1, len(images))
    finally:
        finder.close()
        blender.close()
    warnings = []
    if counts["swapped"] == 0:
        warnings.append(f"{src}: no face of the source person in {len(images)} image(s); copied unchanged")
    return ConvertResult(
        output=out,
        frames=len(images),
        frames_with_swaps=counts["with_swaps"],
        faces_swapped=counts["swapped"],
        faces_left_alone=finder.left_alone,
        stats=None,
        warnings=warnings,
    )


# ------------------------------------------------------------------------------------- preview


def convert_preview(
    input: str | Path,
    model_dir: str | Path,
    output: str | Path,
    n: int,
    config: ConvertConfig | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Convert ``n`` evenly spaced frames of a video and write them as a PNG sheet.

    Each row of the sheet: the original frame, then the swapped one.
    """
    config = config or ConvertConfig()
    src, out = Path(input), Path(output)
    if not src.exists():
        raise InputError("not found", src)
    if out.suffix.lower() != ".png":
        raise OutputError("a preview sheet is a .png file", out)
    _check_output(out, overwrite)
    if n < 1:
        raise ValueError(f"--preview must be at least 1, got {n}")
    swapper = Swapper(model_dir, config)
    info = probe_video(src)
    wanted = set(np.linspace(0, max(0, info.frames - 1), n).round().astype(int).tolist())
    finder = FaceFinder(swapper, config, track_faces=False)
    blender = Blender(config, swapper.model.has_mask, None)
    rows = []
    try:
        for frame in iter_video(src):
            if frame.index not in wanted:
                continue
            job = finder(FrameJob(frame.index, frame.time, frame.rgb.copy()))
            job = blender(_predict_chunk(swapper, [job])[0])
            assert job.out is not None
            rows.append(np.hstack([frame.rgb, job.out]))
    finally:
        finder.close()
        blender.close()
    if not rows:
        raise InputError("no frames could be read", src)
    sheet = np.vstack(rows)
    if sheet.shape[1] > 1600:
        k = 1600 / sheet.shape[1]
        sheet = cv2.resize(sheet, (1600, max(2, round(sheet.shape[0] * k))), interpolation=cv2.INTER_AREA)
    write_image(out, sheet, frame_filters=output_filters(config))
    return out
