"""Take frames from a camera, a stream or a video file in a thread of their own, and hand on only the
newest: a frame that arrives while the swap is busy replaces the one waiting, so latency stays bounded
(a file played with ``realtime=False`` waits instead, and nothing is dropped)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from faceloom.errors import InputError
from faceloom.media.reader import upright

SourceKind = Literal["camera", "file", "stream"]
STREAM_PREFIXES = ("rtsp://", "rtmp://", "udp://", "tcp://", "http://", "https://", "srt://")


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    target: str
    """A device (``/dev/video0``), a file path or a URL."""


def parse_source(text: str) -> SourceSpec:
    """``0`` or ``/dev/video0``: a camera; a URL (rtsp, udp, tcp, http...): a stream; else a file."""
    if text.isdigit():
        return SourceSpec("camera", f"/dev/video{text}" if sys.platform.startswith("linux") else text)
    if text.startswith("/dev/video"):
        return SourceSpec("camera", text)
    if text.lower().startswith(STREAM_PREFIXES):
        return SourceSpec("stream", text)
    return SourceSpec("file", text)


@dataclass
class CapturedFrame:
    index: int
    """Frames the source delivered before this one (dropped ones count)."""
    time: float
    """Seconds: the file's own clock, or since the first frame of a camera or stream."""
    captured: float
    """``time.monotonic()`` when the frame was taken (a file in real time: when it was due)."""
    rgb: np.ndarray


def _camera_format() -> str:
    return {"darwin": "avfoundation", "win32": "dshow"}.get(sys.platform, "v4l2")


def check_source(spec: SourceSpec) -> None:
    """Refuse a camera or file that is not there, before anything is loaded (InputError)."""
    if spec.kind == "camera" and _camera_format() == "v4l2" and not os.path.exists(spec.target):
        raise InputError("no camera there (is it plugged in, or in use by another program?)", spec.target)
    if spec.kind == "file" and not Path(spec.target).is_file():
        raise InputError("not found", spec.target)


def _open(spec: SourceSpec, stall: float) -> av.container.InputContainer:
    check_source(spec)
    try:
        if spec.kind == "camera":
            container = av.open(spec.target, format=_camera_format(), timeout=stall)
        elif spec.kind == "stream":
            container = av.open(spec.target, timeout=(max(stall, 10.0), stall))
        else:
            container = av.open(spec.target)
    except (av.error.FFmpegError, OSError) as exc:
        what = {
            "camera": "cannot open the camera",
            "stream": "cannot open the stream",
            "file": "not a readable video",
        }
        raise InputError(f"{what[spec.kind]} ({type(exc).__name__}: {exc})", spec.target) from exc
    if not container.streams.video:
        container.close()
        raise InputError("has no video stream", spec.target)
    return container


def stalled(stall: float, source: str) -> InputError:
    return InputError(f"no frame for {stall:g} s: the source stalled", source)


class FrameMailbox:
    """The one-place hand-over between a source and the swap. A frame put while the last one waits
    replaces it (counted in ``dropped``); with ``drops=False`` the putter waits for the place instead.
    """

    def __init__(self, name: str, stall: float, *, drops: bool = True) -> None:
        self.name, self.stall, self.drops = name, stall, drops
        self.delivered = 0
        self.dropped = 0
        self._slot: CapturedFrame | None = None
        self._ended = False
        self._error: InputError | None = None
        self._closed = threading.Event()
        self._cond = threading.Condition()

    def put(self, frame: CapturedFrame) -> None:
        with self._cond:
            while not self.drops and self._slot is not None and not self._closed.is_set():
                self._cond.wait(0.1)
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.delivered += 1
            self._cond.notify_all()

    def end(self, error: InputError | None = None) -> None:
        """No more frames; ``error`` is raised to the taker once the last frame is taken."""
        with self._cond:
            self._ended = True
            self._error = self._error or error
            self._cond.notify_all()

    def close(self) -> None:
        """Release a putter waiting for the place."""
        self._closed.set()
        with self._cond:
            self._cond.notify_all()

    def take(self, stop: threading.Event | None = None) -> CapturedFrame | None:
        """The newest frame, waiting for one; None when the source has ended (or ``stop`` is set).

        Raises:
            InputError: the source broke off, or gave no frame for ``stall`` seconds.
        """
        deadline = time.monotonic() + self.stall
        with self._cond:
            while self._slot is None and not self._ended:
                if stop is not None and stop.is_set():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise stalled(self.stall, self.name)
                self._cond.wait(min(left, 0.05))
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            if frame is None and self._error is not None:
                raise self._error
            return frame


class _MailboxSource:
    """What :class:`Capture` and :class:`PushSource` share: their frames go through one mailbox."""

    mailbox: FrameMailbox

    @property
    def delivered(self) -> int:
        return self.mailbox.delivered

    @property
    def dropped(self) -> int:
        return self.mailbox.dropped

    def next(self, stop: threading.Event | None = None) -> CapturedFrame | None:
        """The newest frame, waiting for one; None when the source has ended (or ``stop`` is set).

        Raises:
            InputError: the source broke off, or gave no frame for ``stall`` seconds.
        """
        return self.mailbox.take(stop)


class Capture(_MailboxSource):
    """Read ``spec`` in a background thread; :meth:`next` returns the newest frame not yet taken.

    Attributes:
        fps: the source's nominal frame rate (25 where it says nothing).
        delivered: frames the source gave; dropped: those replaced before the swap took them.
    """

    def __init__(self, spec: SourceSpec, *, realtime: bool = True, stall: float = 5.0) -> None:
        self.spec = spec
        self.stall = stall
        self.drops = spec.kind != "file" or realtime
        self.paced = spec.kind == "file" and realtime
        self._container = _open(spec, stall)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self.fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        self._decoder = iter(self._container.decode(stream))
        try:
            self._first: Any = next(self._decoder)
        except StopIteration:
            self._container.close()
            raise InputError("holds no video frames", spec.target) from None
        except (av.error.FFmpegError, OSError) as exc:
            self._container.close()
            if isinstance(exc, av.error.ExitError):
                raise stalled(stall, spec.target) from exc
            raise InputError(
                f"no first frame could be read ({type(exc).__name__}: {exc})", spec.target
            ) from exc
        self.first_rgb = self._rgb(self._first)
        self.size = (self.first_rgb.shape[1], self.first_rgb.shape[0])
        """(width, height) of the upright frames."""
        first_time = self._first.time if spec.kind == "file" else None
        self.start_time = float(first_time) if first_time is not None else 0.0
        """:attr:`CapturedFrame.time` of the first frame."""
        self.mailbox = FrameMailbox(spec.target, stall, drops=self.drops)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _frames(self) -> Any:
        yield self._first
        self._first = None
        yield from self._decoder

    @staticmethod
    def _rgb(frame: Any) -> np.ndarray:
        return upright(frame.to_ndarray(format="rgb24"), round(frame.rotation or 0))

    def _run(self) -> None:
        start_wall: float | None = None
        error: InputError | None = None
        try:
            for frame in self._frames():
                if self._stop.is_set():
                    break
                now = time.monotonic()
                if start_wall is None:
                    start_wall = now
                ftime = float(frame.time) if frame.time is not None else self.delivered / self.fps
                if self.spec.kind == "file":
                    t = ftime
                    if self.paced:
                        due = start_wall + (ftime - self.start_time)
                        if due > now:
                            self._stop.wait(due - now)
                        now = max(now, due)
                else:
                    t = now - start_wall
                self.mailbox.put(CapturedFrame(self.delivered, t, now, self._rgb(frame)))
        except (av.error.FFmpegError, OSError) as exc:
            if isinstance(exc, av.error.ExitError):  # PyAV's read timeout ran out
                error = stalled(self.stall, self.spec.target)
            else:
                what = (
                    "the camera stopped delivering frames"
                    if self.spec.kind == "camera"
                    else "the source broke off"
                )
                error = InputError(f"{what} ({type(exc).__name__}: {exc})", self.spec.target)
        finally:
            self.mailbox.end(error)

    def close(self) -> None:
        """Stop reading and release the device (safe to call twice)."""
        self._stop.set()
        self.mailbox.close()
        if self._thread.is_alive():
            self._thread.join(timeout=max(1.0, self.stall))
        if not self._thread.is_alive():
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()


class PushSource(_MailboxSource):
    """Frames pushed in by a caller (the web UI's WebSocket) instead of read from a device: the same
    newest-frame-wins hand-over as :class:`Capture`. ``first`` fixes the frame size."""

    def __init__(
        self, first: np.ndarray, *, fps: float = 30.0, stall: float = 5.0, name: str = "browser"
    ) -> None:
        self.fps, self.name = fps, name
        self.size = (first.shape[1], first.shape[0])
        self.start_time = 0.0
        self.first_rgb = first
        self.mailbox = FrameMailbox(name, stall)
        self._t0: float | None = None
        self.push(first)

    def start(self) -> None:
        pass

    def push(self, rgb: np.ndarray) -> None:
        """Hand in one (H, W, 3) uint8 RGB frame of the source's size (others are refused)."""
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            got, want = f"{rgb.shape[1]}x{rgb.shape[0]}", f"{self.size[0]}x{self.size[1]}"
            raise InputError(f"frame is {got}, the session started at {want}", self.name)
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        self.mailbox.put(CapturedFrame(self.delivered, now - self._t0, now, rgb))

    def end(self) -> None:
        self.mailbox.end()

    def close(self) -> None:
        self.end()
