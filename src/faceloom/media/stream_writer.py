"""Send RGB frames as a live H.264 stream in MPEG-TS to a UDP or TCP address, labelled as synthetic.

The counterpart of :class:`faceloom.media.writer.VideoWriter` for outputs that leave the machine as
they are made: nothing is written to disk, frames are encoded with no look-ahead (x264's
``zerolatency`` tune) and sent as soon as they are encoded. The label goes into the MPEG-TS service
description (``service_provider`` / ``service_name``, which players show as the channel) and the
``comment`` tag; the watermark and the visible label plug in as ``frame_filters``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from fractions import Fraction
from types import TracebackType

import av
import numpy as np

from faceloom.errors import OutputError
from faceloom.media.container import check_frame, encoder_frame, fps_fraction, tag_bt709, time_base
from faceloom.media.images import FrameFilter, apply_filters
from faceloom.media.label import LABEL_KEY, make_label

STREAM_SCHEMES = ("udp", "tcp")
"""Addresses a live output can be sent to (``udp://host:port``, ``tcp://host:port``)."""


def is_stream_url(target: str) -> bool:
    return target.split("://", 1)[0].lower() in STREAM_SCHEMES and "://" in target


class StreamWriter:
    """Encode frames to MPEG-TS at ``url`` (``udp://127.0.0.1:5000``; ``tcp://host:port`` connects,
    ``tcp://host:port?listen=1`` waits for a player).

    Args:
        url: where the stream goes.
        fps: the nominal frame rate; frames carry their own times (``write(rgb, time)``), so frames
            dropped upstream leave gaps instead of speeding the stream up.
        size: ``(width, height)``; odd sizes are padded by one replicated row/column.
        frame_filters: ``(rgb, index) -> rgb`` callables applied before encoding (the watermark).
        label_extra: extra ``key=value`` fields for the synthetic label.

    Raises:
        OutputError: the address cannot be opened or written (naming it).
    """

    def __init__(
        self,
        url: str,
        fps: float | Fraction,
        size: tuple[int, int],
        *,
        frame_filters: Sequence[FrameFilter] = (),
        label_extra: Mapping[str, object] | None = None,
        bitrate: int = 2_500_000,
    ) -> None:
        if not is_stream_url(url):
            raise OutputError(
                f"not a stream address; use one of {', '.join(s + '://' for s in STREAM_SCHEMES)}", url
            )
        self.url = url
        self.fps = fps_fraction(fps)
        self._tb = time_base(self.fps)
        self.size = (int(size[0]), int(size[1]))
        self._pad = (self.size[1] % 2, self.size[0] % 2)
        self.frame_filters = list(frame_filters)
        self.frames_written = 0
        self._start: float | None = None
        self._last_pts: int | None = None
        target = (
            url if url.lower().startswith("tcp") or "pkt_size" in url else _with_query(url, "pkt_size=1316")
        )
        try:
            self._out = av.open(target, mode="w", format="mpegts")
        except (OSError, av.error.FFmpegError) as exc:
            raise OutputError(f"cannot open the stream ({type(exc).__name__}: {exc})", url) from exc
        label = make_label(label_extra)
        self._out.metadata["service_provider"] = "faceloom (synthetic)"
        self._out.metadata["service_name"] = label
        self._out.metadata["comment"] = label
        self._out.metadata[LABEL_KEY] = label
        stream = self._out.add_stream(
            "libx264",
            rate=self.fps,
            options={"preset": "ultrafast", "tune": "zerolatency", "g": str(max(1, round(float(self.fps))))},
        )
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width = self.size[0] + self._pad[1]
        stream.height = self.size[1] + self._pad[0]
        stream.pix_fmt = "yuv420p"
        tag_bt709(stream)
        stream.bit_rate = bitrate
        stream.codec_context.time_base = self._tb
        stream.time_base = self._tb
        self._video = stream
        self._closed = False

    def write(self, rgb: np.ndarray, time: float | None = None) -> None:
        """Encode and send one (H, W, 3) uint8 RGB frame; ``time`` in seconds places it."""
        if self._closed:
            raise ValueError("StreamWriter is closed")
        check_frame(rgb, self.size)
        if time is None:
            pts = 0 if self._last_pts is None else self._last_pts + int(1 / (self.fps * self._tb))
        else:
            if self._start is None:
                self._start = float(time)
            pts = max(0, round((Fraction(time) - Fraction(self._start)) / self._tb))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        rgb = apply_filters(rgb, self.frames_written, self.frame_filters)
        frame = encoder_frame(rgb, self.size, self._pad, "yuv420p")
        frame.pts = pts
        frame.time_base = self._tb
        try:
            self._out.mux(self._video.encode(frame))
        except (OSError, av.error.FFmpegError) as exc:
            self._abort()
            raise OutputError(f"the stream broke off ({type(exc).__name__}: {exc})", self.url) from exc
        self.frames_written += 1
        self._last_pts = pts

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._out.mux(self._video.encode(None))
            self._out.close()
        except (OSError, av.error.FFmpegError) as exc:
            raise OutputError(f"the stream could not be closed cleanly ({exc})", self.url) from exc

    def _abort(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError, av.error.FFmpegError):
            self._out.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            self._abort()
        else:
            self.close()


def _with_query(url: str, option: str) -> str:
    return url + ("&" if "?" in url else "?") + option
