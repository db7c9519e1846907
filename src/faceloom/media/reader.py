"""Decode video and image files into upright RGB frames.

Video goes through PyAV with FFmpeg's own frame threading; rotation metadata (display matrix) and
EXIF orientation are applied so that every frame is upright as a player would show it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceloom.errors import InputError
from faceloom.media.sources import MediaSource


@dataclass
class Frame:
    """One upright frame. ``rgb`` is HxWx3 uint8, C-contiguous."""

    index: int
    time: float
    rgb: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    rotation: int
    has_audio: bool
    codec: str


@dataclass
class ReadReport:
    """What a reader saw: filled in while iterating."""

    frames_read: int = 0
    stopped_early: str | None = None
    warnings: list[str] = field(default_factory=list)


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    # FFmpeg's display rotation is counter-clockwise degrees; np.rot90 turns counter-clockwise too.
    k = round(rotation / 90) % 4
    if k:
        rgb = np.rot90(rgb, k=k)
    return np.ascontiguousarray(rgb)


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"not a readable video or image ({type(exc).__name__}: {exc})", path) from exc
    if not container.streams.video:
        container.close()
        raise InputError("has no video stream", path)
    return container


def probe_video(path: Path) -> VideoInfo:
    """Read a video's header: size as displayed, frame rate, frame count and audio presence."""
    with _open_video(path) as container:
        stream = container.streams.video[0]
        rotation = 0
        try:
            first = next(container.decode(stream))
            rotation = round(first.rotation or 0)
        except StopIteration as exc:
            raise InputError("video holds no decodable frames", path) from exc
        except av.error.FFmpegError as exc:
            raise InputError(f"corrupt video, first frame cannot be decoded ({exc})", path) from exc
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        frames = stream.frames or round(duration * fps)
        w, h = stream.codec_context.width, stream.codec_context.height
        if round(rotation / 90) % 2:
            w, h = h, w
        return VideoInfo(
            width=w,
            height=h,
            fps=fps,
            frames=int(frames),
            duration=duration,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )


def iter_video(path: Path, every_n: int = 1, report: ReadReport | None = None) -> Iterator[Frame]:
    """Yield every ``every_n``-th frame of a video, upright, with its index and time in seconds.

    A video that breaks off part-way yields what it could read and notes where it stopped in
    ``report.stopped_early``; one that cannot be opened at all raises InputError.
    """
    report = report if report is not None else ReadReport()
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        index = -1
        decoder = container.decode(stream)
        while True:
            try:
                frame = next(decoder)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                report.stopped_early = f"decoding stopped after frame {index}: {exc}"
                break
            index += 1
            if index % every_n:
                continue
            time = float(frame.time) if frame.time is not None else index / fps
            rgb = frame.to_ndarray(format="rgb24")
            report.frames_read += 1
            yield Frame(index=index, time=time, rgb=upright(rgb, round(frame.rotation or 0)))
        if index < 0 and report.stopped_early is None:
            raise InputError("video holds no decodable frames", path)
        if index < 0:
            raise InputError(f"corrupt video: {report.stopped_early}", path)


def read_image(path: Path) -> np.ndarray:
    """Load an image upright (EXIF orientation applied) as HxWx3 uint8 RGB."""
    try:
        with Image.open(path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = upright.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"not a readable image ({exc})", path) from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def iter_source(source: MediaSource, every_n: int = 1, report: ReadReport | None = None) -> Iterator[Frame]:
    """Frames of a video, or the one frame of an image."""
    if source.kind == "image":
        rgb = read_image(source.path)
        if report is not None:
            report.frames_read = 1
        yield Frame(index=0, time=0.0, rgb=rgb)
    else:
        yield from iter_video(source.path, every_n=every_n, report=report)
