"""Browser copies of videos: H.264 video with AAC audio in MP4, which every browser plays.

faceloom's outputs are H.264 already, but their audio is copied from the source when the
container takes it (MP2 from an MPEG-PS clip, MP3, ...), which browsers do not play. The preview
copies the video packets as they are (so the watermark and the pixels are the very same),
re-encodes the audio to AAC, and keeps the container's metadata, the synthetic label included.
A video that is not H.264 4:2:0 is re-encoded through :class:`faceloom.media.writer.VideoWriter`
first, which labels it too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from faceloom.errors import InputError, OutputError

_BROWSER_PIX_FMTS = ("yuv420p", "yuvj420p")
_SKIP_METADATA = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def plays_in_browser(path: Path) -> bool:
    """H.264 4:2:0 video and AAC (or no) audio in an MP4: what ``<video>`` plays everywhere."""
    try:
        with av.open(str(path)) as inp:
            if not inp.format.name.startswith("mov") or not inp.streams.video:
                return False
            v = inp.streams.video[0].codec_context
            if v.name != "h264" or v.pix_fmt not in _BROWSER_PIX_FMTS:
                return False
            return all(a.codec_context.name == "aac" for a in inp.streams.audio)
    except (OSError, av.error.FFmpegError):
        return False


def browser_preview(src: Path, dst: Path) -> Path:
    """Write (or reuse, when newer than ``src``) an H.264/AAC MP4 copy of ``src`` at ``dst``.

    Raises InputError when ``src`` cannot be read, OutputError when ``dst`` cannot be written.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputError("no such video", src)
    with _lock_for(dst.resolve()):
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            return dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.stem}.{secrets.token_hex(6)}.tmp.mp4")
        video_tmp: Path | None = None
        try:
            video_src = src
            if not _h264_420(src):
                video_tmp = dst.with_name(f".{dst.stem}.{secrets.token_hex(6)}.video.tmp.mp4")
                _reencode_video(src, video_tmp)
                video_src = video_tmp
            _remux(video_src, src, tmp)
            _sign_copy(src, tmp, dst.name)
            os.replace(tmp, dst)
        except (OSError, av.error.FFmpegError) as exc:
            raise OutputError(f"cannot write a browser copy of {src.name}: {exc}", dst) from exc
        finally:
            for p in (tmp, video_tmp):
                if p is not None:
                    with contextlib.suppress(OSError):
                        p.unlink()
        return dst


def _sign_copy(src: Path, copy: Path, title: str) -> None:
    """Give the browser copy Content Credentials saying what the source's say of the model."""
    from faceloom.media.credentials import Credentials, read_credentials, sign_file

    found = read_credentials(src)
    facts = found.model if found is not None and found.model else {}
    signed = copy.with_name(copy.name + ".signed")
    try:
        sign_file(copy, signed, title, Credentials(facts=facts))
        os.replace(signed, copy)
    finally:
        with contextlib.suppress(OSError):
            signed.unlink()


def _h264_420(path: Path) -> bool:
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.video:
                raise InputError("has no video stream", path)
            v = inp.streams.video[0].codec_context
            return v.name == "h264" and v.pix_fmt in _BROWSER_PIX_FMTS
    except av.error.FFmpegError as exc:
        raise InputError(f"not a readable video ({exc})", path) from exc


def _reencode_video(src: Path, dst: Path) -> None:
    from faceloom.media.reader import iter_video, probe_video
    from faceloom.media.writer import VideoWriter

    info = probe_video(src)
    with VideoWriter(dst, fps=info.fps, size=(info.width, info.height), crf=20) as vw:
        for frame in iter_video(src):
            vw.write(frame.rgb)


def _audio_packets(
    inp: av.container.InputContainer, stream: av.audio.stream.AudioStream, out: av.audio.stream.AudioStream
) -> Iterator[av.Packet]:
    """Decode ``stream`` and encode it with ``out`` (AAC), timestamps in samples from 0."""
    tb = stream.time_base
    assert tb is not None
    out_tb = Fraction(1, out.codec_context.sample_rate)
    start: Fraction | None = None
    for packet in inp.demux(stream):
        try:
            frames = stream.decode(packet)
        except av.error.FFmpegError:
            continue
        for frame in frames:
            if frame.pts is None:
                continue
            t = frame.pts * tb
            start = t if start is None else start
            frame.pts = round((t - start) / out_tb)
            frame.time_base = out_tb
            yield from out.encode(frame)
    yield from out.encode(None)


def _copied(packets: Iterator[av.Packet], stream: av.stream.Stream) -> Iterator[av.Packet]:
    for packet in packets:
        if packet.dts is None:
            continue
        packet.stream = stream
        yield packet


def _time_of(packet: av.Packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    tb = packet.time_base
    return float(ts * tb) if ts is not None and tb is not None else 0.0


def _interleave(a: Iterator[av.Packet], b: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """Merge two packet streams in time order, so the muxer never buffers a whole stream."""
    pa, pb = next(a, None), next(b, None)
    while pa is not None or pb is not None:
        if pb is None or (pa is not None and _time_of(pa) <= _time_of(pb)):
            assert pa is not None
            yield pa
            pa = next(a, None)
        else:
            yield pb
            pb = next(b, None)


def _remux(video_src: Path, audio_src: Path, dst: Path) -> None:
    """Copy the video packets of ``video_src`` and AAC audio of ``audio_src`` into ``dst``."""
    with av.open(str(video_src)) as vin, av.open(str(audio_src)) as ain:
        out = av.open(str(dst), mode="w", format="mp4")
        try:
            out.container_options["movflags"] = "use_metadata_tags+faststart"
            for source in (ain.metadata, vin.metadata):
                for k, v in source.items():
                    if k.lower() not in _SKIP_METADATA:
                        out.metadata[k] = v
            v_in = vin.streams.video[0]
            v_out = out.add_stream_from_template(v_in)
            a_in = ain.streams.audio[0] if ain.streams.audio else None
            a_out: av.audio.stream.AudioStream | av.stream.Stream | None = None
            transcode = False
            if a_in is not None:
                if a_in.codec_context.name == "aac":
                    a_out = out.add_stream_from_template(a_in)
                else:
                    ctx = a_in.codec_context
                    rate = ctx.sample_rate
                    codec = av.Codec("aac", "w")
                    if codec.audio_rates and rate not in codec.audio_rates:
                        rate = 48000
                    a_out = out.add_stream("aac", rate=rate, layout=ctx.layout.name)
                    transcode = True
            video = _copied(vin.demux(v_in), v_out)
            audio: Iterator[av.Packet] = iter(())
            if a_in is not None and a_out is not None:
                if transcode:
                    assert isinstance(a_out, av.audio.stream.AudioStream)
                    audio = _audio_packets(ain, a_in, a_out)
                else:
                    audio = _copied(ain.demux(a_in), a_out)
            for packet in _interleave(video, audio):
                out.mux(packet)
        finally:
            out.close()
