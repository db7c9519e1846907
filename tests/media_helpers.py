"""Make test videos and images from the real clips: rotated, darkened, shaken, truncated."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from faceloom.media.reader import iter_video


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    frames = []
    for f in iter_video(path):
        frames.append(f.rgb)
        if limit is not None and len(frames) >= limit:
            break
    return frames


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int = 25,
    display_rotation: int | None = None,
    crf: int = 18,
) -> Path:
    """Encode RGB frames as H.264 MP4; ``display_rotation`` sets the display matrix (ccw degrees)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        if display_rotation is not None:
            stream.set_display_rotation(display_rotation)
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2]), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def transformed_clip(src: Path, dst: Path, fn: Callable[[int, np.ndarray], np.ndarray], **kw: object) -> Path:
    frames = [fn(i, f) for i, f in enumerate(read_frames(src))]
    return write_video(dst, frames, **kw)  # type: ignore[arg-type]
