"""Where live frames go: a video file, an MPEG-TS stream, a window, a virtual camera, or a callback
(the web UI). Every one carries the watermark and, unless switched off, the visible label."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from faceloom.convert.pipeline import VIDEO_SUFFIXES
from faceloom.errors import OutputError
from faceloom.media.credentials import Credentials
from faceloom.media.images import FrameFilter, apply_filters
from faceloom.media.stream_writer import StreamWriter, is_stream_url
from faceloom.media.writer import VideoWriter

WINDOW = "window"
VIRTUAL_CAMERA = "virtualcam"


class FrameSink(Protocol):
    """Takes finished frames in order; ``close`` finishes the output (a file becomes playable), also
    after an error or Ctrl-C upstream: what was swapped so far is kept."""

    done: bool
    """The sink has ended the session (a window the user closed)."""

    def write(self, rgb: np.ndarray, time: float) -> None: ...

    def close(self) -> None: ...


class FileSink:
    done = False

    def __init__(self, writer: VideoWriter) -> None:
        self.writer = writer

    def write(self, rgb: np.ndarray, time: float) -> None:
        self.writer.write(rgb, time)

    def close(self) -> None:
        self.writer.close()


class StreamSink:
    done = False

    def __init__(self, writer: StreamWriter, start_time: float) -> None:
        self.writer, self.start_time = writer, start_time

    def write(self, rgb: np.ndarray, time: float) -> None:
        self.writer.write(rgb, time - self.start_time)

    def close(self) -> None:
        self.writer.close()


class WindowSink:
    """An OpenCV window; closing it (or q / Esc) ends the session."""

    def __init__(self, filters: Sequence[FrameFilter], title: str = "faceloom live (synthetic)") -> None:
        import cv2

        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise OutputError(
                "no display here (DISPLAY is not set); send the frames to a file or a stream", WINDOW
            )
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as exc:
            raise OutputError(
                "this OpenCV build has no windows (opencv-python-headless); write to a file or a stream",
                WINDOW,
            ) from exc
        self.cv2, self.title, self.filters, self.frames = cv2, title, list(filters), 0
        self.done = False

    def write(self, rgb: np.ndarray, time: float) -> None:
        frame = apply_filters(rgb, self.frames, self.filters)
        self.frames += 1
        self.cv2.imshow(self.title, frame[:, :, ::-1])
        if self.cv2.waitKey(1) in (27, ord("q")):
            self.done = True

    def close(self) -> None:
        self.cv2.destroyWindow(self.title)


class VirtualCameraSink:
    """A virtual camera other programs (video calls) can pick (pyvirtualcam; v4l2loopback on Linux)."""

    done = False

    def __init__(
        self, device: str | None, size: tuple[int, int], fps: float, filters: Sequence[FrameFilter]
    ) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise OutputError(
                "pyvirtualcam is not installed: pip install 'faceloom[virtualcam]' "
                "(on Linux also load v4l2loopback: sudo modprobe v4l2loopback)",
                VIRTUAL_CAMERA,
            ) from exc
        try:
            self.cam: Any = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps, device=device)
        except (RuntimeError, OSError) as exc:
            raise OutputError(f"no virtual camera could be opened ({exc})", device or VIRTUAL_CAMERA) from exc
        self.filters, self.frames = list(filters), 0

    def write(self, rgb: np.ndarray, time: float) -> None:
        self.cam.send(apply_filters(rgb, self.frames, self.filters))
        self.frames += 1

    def close(self) -> None:
        self.cam.close()


class CallbackSink:
    done = False

    """Hands each finished (filtered) frame to ``send``: how the web UI gets them."""

    def __init__(self, send: Callable[[np.ndarray, float], None], filters: Sequence[FrameFilter]) -> None:
        self.send, self.filters, self.frames = send, list(filters), 0

    def write(self, rgb: np.ndarray, time: float) -> None:
        self.send(apply_filters(rgb, self.frames, self.filters), time)
        self.frames += 1

    def close(self) -> None:
        pass


def check_target(target: str, overwrite: bool) -> None:
    """Refuse an output before the session starts: a file that exists, or of no video kind."""
    if target in (WINDOW, VIRTUAL_CAMERA) or target.startswith(VIRTUAL_CAMERA + ":") or is_stream_url(target):
        return
    path = Path(target)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(
            f"not an output faceloom live knows: give a video file ({', '.join(sorted(VIDEO_SUFFIXES))}), "
            f"udp://host:port, tcp://host:port, {WINDOW} or {VIRTUAL_CAMERA}",
            target,
        )
    if path.exists() and not overwrite:
        raise OutputError("exists; pass --overwrite to replace it", path)
    if not path.parent.is_dir():
        raise OutputError("its folder does not exist", path)


def open_sink(
    target: str,
    *,
    fps: float,
    size: tuple[int, int],
    filters: Sequence[FrameFilter],
    label_extra: dict[str, object],
    credentials: Credentials,
    start_time: float = 0.0,
    overwrite: bool = False,
) -> FrameSink:
    """``window``, ``virtualcam[:DEVICE]``, ``udp://host:port`` / ``tcp://host:port``, or a video file.

    Raises:
        OutputError: the output exists (without ``overwrite``), has no video suffix, or cannot be opened.
    """
    if target == WINDOW:
        return WindowSink(filters)
    if target == VIRTUAL_CAMERA or target.startswith(VIRTUAL_CAMERA + ":"):
        device = target.partition(":")[2] or None
        return VirtualCameraSink(device, size, fps, filters)
    if is_stream_url(target):
        stream = StreamWriter(target, fps, size, frame_filters=filters, label_extra=label_extra)
        return StreamSink(stream, start_time)
    check_target(target, overwrite)
    writer = VideoWriter(
        Path(target),
        fps=fps,
        size=size,
        start_time=start_time,
        frame_filters=filters,
        label_extra=label_extra,
        credentials=credentials,
        codec_options={"preset": "ultrafast", "tune": "zerolatency"},
    )
    return FileSink(writer)
