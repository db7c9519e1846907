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
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceloom.config import ConvertConfig
from faceloom.convert.compose import Blender, output_credentials, output_filters, output_size, scaled_size
from faceloom.convert.face_swapper import FaceSwapper, predict_chunk
from faceloom.convert.finder import FaceFinder
from faceloom.convert.frames import ConvertResult, FrameJob
from faceloom.convert.swapper import open_swapper
from faceloom.errors import InputError, OutputError
from faceloom.faces.faceset import Faceset
from faceloom.media.reader import Frame, ReadReport, iter_source, iter_video, probe_video
from faceloom.media.sources import MediaSource, collect_sources
from faceloom.media.writer import IMAGE_SUFFIXES, VideoWriter, write_image
from faceloom.pipeline import Stage, run_pipeline
from faceloom.progress import ProgressFn, report

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi"})

__all__ = ["ConvertResult", "convert", "convert_preview"]


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
    key = fs.find_source(video)
    if key is None:
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
    swapper = open_swapper(model_dir, config)
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
    swapper: FaceSwapper,
    config: ConvertConfig,
    faceset_path: Path | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> ConvertResult:
    info = probe_video(src)
    fs, key = _load_faceset(faceset_path, src)
    read_report = ReadReport()
    finder = FaceFinder(swapper, config, faceset=fs, faceset_key=key)
    out_size = scaled_size(info.width, info.height, config)
    size = output_size(info.width, info.height, config)
    total = info.frames
    if config.start is not None or config.end is not None:
        t0, t1 = config.start or 0.0, config.end if config.end is not None else info.duration
        total = max(1, round((min(t1, info.duration) - t0) * info.fps))
    counts = {"frames": 0, "with_swaps": 0, "swapped": 0, "empty": 0}
    blenders: list[Blender] = []

    def make_blender() -> Callable[[list[FrameJob]], list[FrameJob]]:
        blender = Blender(config, swapper.has_mask, out_size)
        blenders.append(blender)

        def blend(chunk: list[FrameJob]) -> list[FrameJob]:
            return [blender(job) for job in chunk]

        return blend

    stages = [
        Stage("detect+align", lambda: lambda chunk: [finder(job) for job in chunk]),
        Stage("predict", lambda: lambda chunk: predict_chunk(swapper, chunk)),
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
        label_extra={"model": swapper.name, "to": config.to},
        credentials=output_credentials(config, swapper.facts()),
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
        report(progress, src.name, counts["frames"], total)

    frames = iter_video(src, report=read_report)
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
    if read_report.stopped_early:
        warnings.append(
            f"{src}: {read_report.stopped_early}; converted the {counts['frames']} frames before it"
        )
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
        credentials=writer.credentials_written,
    )


def _convert_images(
    sources: list[MediaSource],
    src: Path,
    out: Path,
    swapper: FaceSwapper,
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
    blender = Blender(config, swapper.has_mask, None)
    filters = output_filters(config)
    credentials = output_credentials(config, swapper.facts())
    counts = {"swapped": 0, "with_swaps": 0}
    try:
        for n, source in enumerate(images):
            if cancel is not None and cancel.is_set():
                break
            frame = next(iter_source(source))
            job = finder(FrameJob(0, 0.0, frame.rgb))
            job = blender(predict_chunk(swapper, [job])[0])
            assert job.out is not None
            out_size = scaled_size(job.rgb.shape[1], job.rgb.shape[0], config)
            img = job.out if out_size is None else cv2.resize(job.out, out_size, interpolation=cv2.INTER_AREA)
            target = out if single else out / source.path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, img, frame_filters=filters, credentials=credentials)
            counts["swapped"] += len(job.faces)
            counts["with_swaps"] += bool(job.faces)
            report(progress, source.path.name, n + 1, len(images))
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
        credentials=config.credentials,
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
    swapper = open_swapper(model_dir, config)
    info = probe_video(src)
    wanted = set(np.linspace(0, max(0, info.frames - 1), n).round().astype(int).tolist())
    finder = FaceFinder(swapper, config, track_faces=False)
    blender = Blender(config, swapper.has_mask, None)
    rows = []
    try:
        for frame in iter_video(src):
            if frame.index not in wanted:
                continue
            job = finder(FrameJob(frame.index, frame.time, frame.rgb.copy()))
            job = blender(predict_chunk(swapper, [job])[0])
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
    write_image(
        out,
        sheet,
        frame_filters=output_filters(config),
        credentials=output_credentials(config, swapper.facts()),
    )
    return out
