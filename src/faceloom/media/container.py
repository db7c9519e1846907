"""Container and stream facts the video writer needs: exact frame rates, time bases, codec names and
what a muxer takes."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

_NTSC_RATES = tuple(Fraction(k * 1000, 1001) for k in (24, 30, 48, 60, 120, 240))


def fps_fraction(fps: float | Fraction) -> Fraction:
    """The frame rate as a Fraction; within 0.01 % of an NTSC rate it becomes that rate exactly
    (29.97 and FLV's millisecond-derived 989/33 both give 30000/1001)."""
    if not isinstance(fps, Fraction):
        if not np.isfinite(fps):
            raise ValueError(f"fps must be finite, got {fps}")
        fps = Fraction(fps)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {float(fps)}")
    for ntsc in _NTSC_RATES:
        if abs(fps - ntsc) <= ntsc * Fraction(1, 10000):
            return ntsc
    return fps.limit_denominator(1001)


def time_base(rate: Fraction) -> Fraction:
    """A time base in which every frame lasts a whole number of ticks, at least 1/10000 s fine."""
    ticks = rate.numerator
    return Fraction(1, ticks * max(1, -(-10000 // ticks)))


def codec_name(stream: av.stream.Stream) -> str:
    """The codec's canonical name ("mp3", not the decoder's "mp3float")."""
    ctx = stream.codec_context
    if ctx is None:
        return ""
    return str(ctx.codec.canonical_name)


def muxer_takes(format_name: str, template: av.stream.Stream) -> bool:
    """Whether ``format_name`` writes a header for a stream copied from ``template``.

    ``supported_codecs`` says yes to some pairs the muxer then refuses (Opus in MOV), and a
    refused header would sink the whole output, so the header is tried first in memory.
    """
    try:
        with av.open(io.BytesIO(), mode="w", format=format_name) as probe:
            probe.add_stream_from_template(template)
            probe.start_encoding()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def check_frame(rgb: np.ndarray, size: tuple[int, int]) -> None:
    """Refuse (ValueError) a frame that is not (H, W, 3) uint8 of ``size`` = (W, H)."""
    from faceloom.media.images import check_rgb

    check_rgb(rgb, "frame")
    if (rgb.shape[1], rgb.shape[0]) != size:
        raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, writer expects {size[0]}x{size[1]}")


def encoder_frame(
    rgb: np.ndarray, size: tuple[int, int], pad: tuple[int, int], pix_fmt: str
) -> av.VideoFrame:
    """One (H, W, 3) uint8 RGB frame of ``size`` (see :func:`check_frame`) as an encoder of
    ``pix_fmt`` takes it. ``pad`` is the (rows, columns) of edge pixels added for a 4:2:0 format's
    even size. YUV frames are converted with the BT.709
    matrix in limited range, as :func:`tag_bt709` tags the stream: untagged, players guess 601 or
    709 by frame size, and the colours of HD output would shift.
    """
    if pad != (0, 0):
        rgb = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if not pix_fmt.startswith(("yuv", "nv")):
        return frame
    return frame.reformat(
        format=pix_fmt,
        src_colorspace="itu709",
        dst_colorspace="itu709",
        src_color_range="JPEG",
        dst_color_range="MPEG",
    )


def tag_bt709(stream: av.video.stream.VideoStream) -> None:
    """Tag a YUV stream as BT.709, limited range (what :func:`encoder_frame` converts to)."""
    stream.codec_context.colorspace = 1  # AVCOL_SPC_BT709
    stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG
