"""The one writer every faceloom output goes through, so the synthetic marks cannot be forgotten.

Images (:func:`write_image`, in :mod:`faceloom.media.images`) and videos (:class:`VideoWriter`)
are written to a temporary file in the target folder and renamed into place on success: a kill, a
full disk or an exception never leaves a half-written file under the final name. Unless
``synthetic=False`` (crops of real footage, e.g. facesets), each file carries the machine-readable
label (:mod:`faceloom.media.label`, read back by :func:`read_label`) and signed C2PA Content
Credentials (:mod:`faceloom.media.credentials`). The invisible watermark is not written here: it
plugs in as a ``frame_filters`` entry (see :data:`FrameFilter`). Import every writer from here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import numpy as np

from faceloom import fsutil
from faceloom.errors import InputError, OutputError, output_error_from_os
from faceloom.media.container import (
    check_frame,
    codec_name,
    encoder_frame,
    fps_fraction,
    muxer_takes,
    tag_bt709,
    time_base,
)
from faceloom.media.credentials import DEFAULT_CREDENTIALS, Credentials, check_signer, sign_file, supports
from faceloom.media.images import (
    IMAGE_SUFFIXES,
    FrameFilter,
    apply_filters,
    encode_image,
    write_image,
)
from faceloom.media.label import LABEL_KEY, LABEL_PREFIX, make_label, parse_label, read_label

_MOV_FORMATS = ("mp4", "mov", "ipod", "ismv", "3gp", "3g2", "psp", "f4v")
_CRF_CODECS = frozenset({"libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9", "libvpx"})


class VideoWriter:
    """Encode RGB frames to a labelled video file, with the audio of a source video muxed in.

    Use as a context manager::

        with VideoWriter(out, fps=info.fps, size=(w, h), audio_from=src) as vw:
            for frame in frames:
                vw.write(frame)

    Frames are encoded with ``codec`` (libx264, CRF ``crf``, ``pix_fmt``) into a temporary file
    in the target folder (``.<stem>.<random>.tmp<suffix>``), renamed to ``path`` when the writer
    closes without error. On an exception inside the ``with`` block, or a failed close, the
    temporary file is removed and nothing appears under ``path``.

    Audio: the first audio stream of ``audio_from`` is copied packet for packet (no
    re-encoding) when the output container accepts its codec (MP4/MOV/MKV/AVI take MP2 and MP3;
    WebM takes only Opus/Vorbis), else it is transcoded to AAC (or, where the container
    cannot hold AAC, to the container's default audio codec, e.g. Opus for WebM). The audio
    span ``[start_time, end_time)`` of the source, in seconds on the source's own clock (the
    clock of :attr:`faceloom.media.reader.Frame.time`), is taken and shifted so that
    ``start_time`` falls on the output's first frame. ``start_time`` defaults to the start of
    the source's video stream (keeping lip sync for a whole-clip convert); ``end_time`` to the
    end of the source audio. Audio packets are interleaved with video as frames arrive.

    Args:
        path: output file; the container follows its suffix (.mp4, .mkv, .mov, .webm, .avi).
        fps: frame rate, float (29.97 becomes 30000/1001) or Fraction.
        size: ``(width, height)`` of the frames that will be written. With a 4:2:0 ``pix_fmt``
            odd sizes are padded by one replicated row/column to the next even size.
        audio_from: a media file whose first audio stream goes into the output; None for silent.
        synthetic: write the synthetic label into the container metadata.
        codec, crf, pix_fmt: video encoder settings (``crf`` is passed to encoders that take it).
        start_time, end_time: audio span of ``audio_from`` in seconds (see above).
        frame_filters: callables ``(rgb, frame_index) -> rgb`` applied to each frame before
            encoding, in order. Empty by default; the invisible watermark plugs in here.
        label_extra: extra ``key=value`` fields for the label.
        codec_options: extra encoder options (e.g. ``{"preset": "veryfast"}``).
        credentials: what the signed C2PA manifest says (:mod:`faceloom.media.credentials`);
            containers without a place for one (MKV, WebM) get a warning instead.

    Raises:
        OutputError: the output cannot be created or written (naming ``path``).
        InputError: ``audio_from`` cannot be opened.
        ValueError: bad arguments or a frame of the wrong shape.

    Attributes:
        audio_mode: ``"copy"``, ``"transcode"`` or None (no audio).
        audio_codec: the codec of the output audio stream, or None.
        frames_written: frames encoded so far.
        warnings: problems that did not stop the write (e.g. source audio broke off).
        credentials_written: a signed C2PA manifest is in the file.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        size: tuple[int, int],
        *,
        audio_from: str | Path | None = None,
        synthetic: bool = True,
        codec: str = "libx264",
        crf: int = 18,
        pix_fmt: str = "yuv420p",
        start_time: float | None = None,
        end_time: float | None = None,
        frame_filters: Sequence[FrameFilter] = (),
        label_extra: Mapping[str, object] | None = None,
        codec_options: Mapping[str, str] | None = None,
        credentials: Credentials = DEFAULT_CREDENTIALS,
    ) -> None:
        self.path = Path(path)
        self._credentials = credentials if synthetic and credentials.enabled else None
        self.credentials_written = False
        if self._credentials is not None and supports(self.path):
            check_signer(self._credentials)
        self.fps = fps_fraction(fps)
        self._tb = time_base(self.fps)
        self._frame_ticks = int(1 / (self.fps * self._tb))
        self._last_pts: int | None = None
        self._start_time = start_time
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"size must be positive (width, height), got {size}")
        self.size = (width, height)
        self.frame_filters = list(frame_filters)
        self.frames_written = 0
        self.warnings: list[str] = []
        self.audio_mode: Literal["copy", "transcode"] | None = None
        self.audio_codec: str | None = None
        self._closed = False
        self._tmp: Path | None = None
        self._out: av.container.OutputContainer | None = None
        self._in: av.container.InputContainer | None = None
        self._audio_items: Iterator[av.Packet] | None = None
        self._pending_audio: av.Packet | None = None
        if end_time is not None and start_time is not None and end_time <= start_time:
            raise ValueError(f"end_time {end_time} must be after start_time {start_time}")

        subsampled = pix_fmt.startswith(("yuv420", "yuvj420", "nv12", "yuv422", "yuvj422"))
        pad_w = width % 2 if subsampled else 0
        pad_h = height % 2 if subsampled and not pix_fmt.startswith(("yuv422", "yuvj422")) else 0
        self._pad = (pad_h, pad_w)

        label = make_label(label_extra) if synthetic else None
        try:
            if fsutil._write_hook is not None:
                fsutil._write_hook(self.path)
            # Not mkstemp: its 0600 mode would survive the rename. O_EXCL with a random name is as safe.
            tmp = self.path.parent / f".{self.path.stem}.{secrets.token_hex(6)}.tmp{self.path.suffix}"
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            self._tmp = tmp
        except OSError as exc:
            raise output_error_from_os(exc, self.path) from exc

        try:
            self._open_output(label, codec, crf, pix_fmt, dict(codec_options or {}))
            if audio_from is not None:
                self._open_audio(Path(audio_from), start_time, end_time)
        except BaseException:
            self._abort()
            raise

    # ----------------------------------------------------------------------------------- setup

    def _open_output(
        self, label: str | None, codec: str, crf: int, pix_fmt: str, options: dict[str, str]
    ) -> None:
        assert self._tmp is not None
        try:
            out = av.open(str(self._tmp), mode="w")
        except (OSError, av.error.FFmpegError) as exc:
            raise self._error(exc) from exc
        self._out = out
        if out.format.name.split(",")[0] in _MOV_FORMATS:
            out.container_options["movflags"] = "use_metadata_tags"
        if label is not None:
            out.metadata[LABEL_KEY] = label
            out.metadata["comment"] = label
        if codec in _CRF_CODECS:
            options.setdefault("crf", str(crf))
        try:
            stream = out.add_stream(codec, rate=self.fps, options=options)
        except (ValueError, av.error.FFmpegError) as exc:
            raise OutputError(f"cannot encode video with {codec!r}: {exc}", self.path) from exc
        if not isinstance(stream, av.video.stream.VideoStream):
            raise OutputError(f"{codec!r} is not a video codec", self.path)
        stream.width = self.size[0] + self._pad[1]
        stream.height = self.size[1] + self._pad[0]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = self._tb
        stream.time_base = self._tb
        self._yuv = pix_fmt.startswith(("yuv", "nv"))
        if self._yuv:
            tag_bt709(stream)
        self._pix_fmt = pix_fmt
        self._video = stream

    def _open_audio(self, src: Path, start_time: float | None, end_time: float | None) -> None:
        assert self._out is not None
        try:
            inp = av.open(str(src), mode="r")
        except (OSError, av.error.FFmpegError) as exc:
            raise InputError(f"cannot read audio source ({type(exc).__name__}: {exc})", src) from exc
        self._in = inp
        if not inp.streams.audio:
            self.warnings.append(f"{src}: no audio stream, output is silent")
            return
        in_stream = inp.streams.audio[0]
        if start_time is None:
            start_time = 0.0
            vs = inp.streams.video[0] if inp.streams.video else None
            if vs is not None and vs.start_time is not None and vs.time_base is not None:
                start_time = float(vs.start_time * vs.time_base)
        self._start_time = start_time
        name = codec_name(in_stream)
        supported = self._out.supported_codecs
        if name and name in supported and muxer_takes(self._out.format.name, in_stream):
            out_stream = self._out.add_stream_from_template(in_stream)
            self.audio_mode = "copy"
            self.audio_codec = name
            self._audio_items = self._copy_packets(inp, in_stream, out_stream, start_time, end_time)
        else:
            target = "aac" if "aac" in supported else self._out.default_audio_codec
            ctx = in_stream.codec_context
            rate = ctx.sample_rate
            codec = av.Codec(target, "w")
            if codec.audio_rates and rate not in codec.audio_rates:
                rate = 48000 if 48000 in codec.audio_rates else max(codec.audio_rates)
            try:
                out_audio = self._out.add_stream(target, rate=rate, layout=ctx.layout.name)
            except (ValueError, av.error.FFmpegError) as exc:
                raise OutputError(f"cannot encode audio as {target!r}: {exc}", self.path) from exc
            assert isinstance(out_audio, av.audio.stream.AudioStream)
            self.audio_mode = "transcode"
            self.audio_codec = target
            self._audio_items = self._transcode_packets(inp, in_stream, out_audio, start_time, end_time)

    # ---------------------------------------------------------------------------------- audio

    def _source_packets(
        self, inp: av.container.InputContainer, in_stream: av.audio.stream.AudioStream
    ) -> Iterator[av.Packet]:
        demux = inp.demux(in_stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                self.warnings.append(f"source audio broke off: {exc}")
                return
            if packet.size and (packet.pts is not None or packet.dts is not None):
                yield packet

    def _copy_packets(
        self,
        inp: av.container.InputContainer,
        in_stream: av.audio.stream.AudioStream,
        out_stream: av.stream.Stream,
        start: float,
        end: float | None,
    ) -> Iterator[av.Packet]:
        tb = in_stream.time_base
        assert tb is not None
        offset = round(Fraction(start) / tb)
        for packet in self._source_packets(inp, in_stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            assert ts is not None
            if end is not None and ts * tb >= end:
                break
            if ts + (packet.duration or 0) <= offset:  # ends before the span
                continue
            if packet.pts is not None:
                packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
            packet.stream = out_stream
            yield packet

    def _decoded_frames(
        self, inp: av.container.InputContainer, in_stream: av.audio.stream.AudioStream
    ) -> Iterator[av.AudioFrame]:
        for packet in itertools.chain(self._source_packets(inp, in_stream), [None]):  # None: flush
            try:
                yield from in_stream.decode(packet)
            except av.error.FFmpegError as exc:
                self.warnings.append(f"source audio packet could not be decoded, skipped: {exc}")

    def _transcode_packets(
        self,
        inp: av.container.InputContainer,
        in_stream: av.audio.stream.AudioStream,
        out_stream: av.audio.stream.AudioStream,
        start: float,
        end: float | None,
    ) -> Iterator[av.Packet]:
        tb = in_stream.time_base
        assert tb is not None
        out_tb = Fraction(1, out_stream.codec_context.sample_rate)
        for frame in self._decoded_frames(inp, in_stream):
            if frame.pts is None:
                continue
            t = frame.pts * tb
            if end is not None and t >= end:
                break
            if t + Fraction(frame.samples, frame.sample_rate) <= start:  # ends before the span
                continue
            frame.pts = round((t - Fraction(start)) / out_tb)
            frame.time_base = out_tb
            yield from out_stream.encode(frame)
        yield from out_stream.encode(None)

    def _mux_audio_until(self, limit: float | None) -> None:
        """Mux queued audio packets that start before ``limit`` seconds of output time (all if None)."""
        if self._audio_items is None:
            return
        assert self._out is not None
        while True:
            packet = self._pending_audio
            if packet is None:
                packet = next(self._audio_items, None)
                if packet is None:
                    self._audio_items = None
                    return
            ts = packet.pts if packet.pts is not None else packet.dts
            tb = packet.time_base
            if limit is not None and ts is not None and tb is not None and ts * tb >= limit:
                self._pending_audio = packet
                return
            self._pending_audio = None
            self._out.mux(packet)

    # ---------------------------------------------------------------------------------- writing

    def _error(self, exc: BaseException) -> OutputError:
        if isinstance(exc, OSError):
            return output_error_from_os(exc, self.path)
        return OutputError(f"cannot write video: {exc}", self.path)

    def write(self, rgb: np.ndarray, time: float | None = None) -> None:
        """Encode one frame: :math:`(H, W, 3)` uint8 RGB with ``(W, H) == size``.

        ``time`` (optional) is the frame's source time in seconds (:attr:`Frame.time`); it keeps
        variable-frame-rate sources in sync with their audio: the frame is placed at
        ``time - start_time`` (start_time defaulting as for audio, or to the first frame's time
        without ``audio_from``). Without it, frames follow each other at ``1 / fps``.
        """
        if self._closed or self._out is None:
            raise ValueError("VideoWriter is closed")
        check_frame(rgb, self.size)
        if time is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._frame_ticks
        else:
            if self._start_time is None:
                self._start_time = float(time)
            pts = round((Fraction(time) - Fraction(self._start_time)) / self._tb)
            if pts < 0:
                raise ValueError(f"frame time {time:.3f} s is before start_time {self._start_time:.3f} s")
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
        rgb = apply_filters(rgb, self.frames_written, self.frame_filters)
        frame = encoder_frame(rgb, self.size, self._pad, self._pix_fmt)
        frame.pts = pts
        frame.time_base = self._tb
        try:
            self._out.mux(self._video.encode(frame))
            self.frames_written += 1
            self._last_pts = pts
            self._mux_audio_until(float((pts + self._frame_ticks) * self._tb))
        except (OSError, av.error.FFmpegError) as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        """Flush the encoders, mux the rest of the audio, and rename the file into place.

        Raises OutputError (the temporary file removed) if any of that fails.
        """
        if self._closed:
            return
        try:
            assert self._out is not None and self._tmp is not None
            if self.frames_written == 0:
                raise OutputError("no frames were written, video not created", self.path)
            try:
                self._out.mux(self._video.encode(None))
                self._mux_audio_until(None)
                self._out.close()
                self._out = None
                self._add_credentials()
                if fsutil._write_hook is not None:
                    fsutil._write_hook(self.path)
                os.replace(self._tmp, self.path)
                self._tmp = None
            except (OSError, av.error.FFmpegError) as exc:
                raise self._error(exc) from exc
        except BaseException:
            self._abort()
            raise
        self._close_input()
        self._closed = True

    def _add_credentials(self) -> None:
        """Sign the finished temporary file's Content Credentials (a signed copy replaces it)."""
        if self._credentials is None or self._tmp is None:
            return
        if not supports(self.path):
            self.warnings.append(
                f"{self.path.name}: no Content Credentials written (C2PA has no place for them in "
                f"{self.path.suffix} files); the label and the watermark are in it"
            )
            return
        signed = self._tmp.with_name(self._tmp.name + ".signed")
        try:
            sign_file(self._tmp, signed, self.path.name, self._credentials)
            os.replace(signed, self._tmp)
        except OutputError as exc:  # the video is kept: it has the label and the watermark
            self.warnings.append(f"{self.path.name}: no Content Credentials written ({exc})")
            return
        finally:
            with contextlib.suppress(OSError):
                signed.unlink()
        self.credentials_written = True

    def _close_input(self) -> None:
        if self._in is not None:
            with contextlib.suppress(Exception):
                self._in.close()
            self._in = None
        self._audio_items = None
        self._pending_audio = None

    def _abort(self) -> None:
        """Drop everything: close containers, remove the temporary file."""
        self._closed = True
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        self._close_input()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abort()
        else:
            self.close()


__all__ = [
    "DEFAULT_CREDENTIALS",
    "IMAGE_SUFFIXES",
    "LABEL_KEY",
    "LABEL_PREFIX",
    "Credentials",
    "FrameFilter",
    "VideoWriter",
    "encode_image",
    "make_label",
    "parse_label",
    "read_label",
    "write_image",
]
