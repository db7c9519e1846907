"""faceloom.media.writer: labelled, atomic image and video output, with the source audio."""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from faceloom import __version__, fsutil, metrics
from faceloom.errors import OutputError
from faceloom.media import writer
from faceloom.media.reader import iter_video, probe_video, read_image
from faceloom.media.writer import LABEL_KEY, VideoWriter, read_label, write_image


@pytest.fixture(scope="module")
def g1_frames(grid: dict[str, Path]) -> list[np.ndarray]:
    return [f.rgb for f in iter_video(grid["g1"])]


@dataclass
class AudioTrack:
    codec: str
    payloads: list[bytes]
    seconds: float  # decoded duration
    frame_seconds: float  # one audio frame


def _audio(path: Path) -> AudioTrack:
    """Codec, packet payloads and decoded duration of the first audio stream."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        packets = [p for p in c.demux(stream) if p.size]
        samples = sum(f.samples for p in packets for f in stream.decode(p))
        rate = stream.codec_context.sample_rate
        return AudioTrack(
            codec=stream.codec_context.codec.canonical_name,
            payloads=[bytes(p) for p in packets],
            seconds=samples / rate,
            frame_seconds=(stream.codec_context.frame_size or 1024) / rate,
        )


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_image_label_round_trip(tmp_path: Path, g1_frames: list[np.ndarray], suffix: str) -> None:
    rgb = g1_frames[10]
    path = tmp_path / f"swap{suffix}"
    write_image(path, rgb, label_extra={"model": "original"})
    label = read_label(path)
    assert label == {"synthetic": "1", "tool": f"faceloom {__version__}", "model": "original"}
    back = read_image(path)
    assert back.shape == rgb.shape
    if suffix == ".png":
        assert np.array_equal(back, rgb)
        with Image.open(path) as img:
            assert LABEL_KEY in img.info  # a tEXt chunk any PNG reader sees
    else:
        assert metrics.psnr(rgb, back) > 35.0
        with Image.open(path) as img:
            assert "faceloom" in str(img.getexif().get(0x010E))
    assert _no_leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".png", ".jpeg"])
def test_real_crops_carry_no_label(tmp_path: Path, g1_frames: list[np.ndarray], suffix: str) -> None:
    path = tmp_path / f"face{suffix}"
    write_image(path, g1_frames[0][50:250, 100:300], synthetic=False)
    assert read_label(path) is None
    with Image.open(path) as img:
        assert LABEL_KEY not in img.info and 0x010E not in img.getexif()


def test_image_frame_filters_and_quality(tmp_path: Path, g1_frames: list[np.ndarray]) -> None:
    rgb = g1_frames[0]
    seen: list[int] = []

    def invert(img: np.ndarray, index: int) -> np.ndarray:
        seen.append(index)
        return 255 - img

    write_image(tmp_path / "inv.png", rgb, frame_filters=[invert])
    assert seen == [0] and np.array_equal(read_image(tmp_path / "inv.png"), 255 - rgb)
    write_image(tmp_path / "q50.jpg", rgb, quality=50)
    write_image(tmp_path / "q95.jpg", rgb, quality=95)
    assert (tmp_path / "q50.jpg").stat().st_size < (tmp_path / "q95.jpg").stat().st_size
    with pytest.raises(OutputError, match="unsupported image format"):
        write_image(tmp_path / "x.bmp", rgb)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        write_image(tmp_path / "x.png", rgb.astype(np.float32))


def test_image_write_failure_leaves_nothing(
    tmp_path: Path, g1_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "swap.png"
    path.write_bytes(b"old")

    def full_disk(p: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "_write_hook", full_disk)
    with pytest.raises(OutputError, match="no space left") as info:
        write_image(path, g1_frames[0])
    assert info.value.path == str(path)
    assert path.read_bytes() == b"old"
    assert _no_leftovers(tmp_path) == []


def test_label_text_rules() -> None:
    assert writer.parse_label(writer.make_label({"model": "dfl-h128"})) == {
        "synthetic": "1",
        "tool": f"faceloom {__version__}",
        "model": "dfl-h128",
    }
    assert writer.parse_label("some other comment") is None
    with pytest.raises(ValueError, match="may not contain"):
        writer.make_label({"model": "a;b"})
    with pytest.raises(ValueError, match="reserved"):
        writer.make_label({"synthetic": "0"})


# -------------------------------------------------------------------------------------------- video


def _write_clip(path: Path, frames: list[np.ndarray], src: Path, **kwargs: object) -> VideoWriter:
    """Write ``frames`` (of the clip ``src``) with ``src``'s audio unless ``audio_from`` says otherwise."""
    info = probe_video(src)
    kwargs.setdefault("audio_from", src)
    with VideoWriter(path, info.fps, (info.width, info.height), **kwargs) as vw:  # type: ignore[arg-type]
        for rgb in frames:
            vw.write(rgb)
    return vw


def test_mp4_keeps_frames_fps_audio_and_label(
    tmp_path: Path, grid: dict[str, Path], g1_frames: list[np.ndarray]
) -> None:
    out = tmp_path / "swap.mp4"
    vw = _write_clip(out, g1_frames, grid["g1"])
    assert vw.audio_mode == "copy" and vw.audio_codec == "mp2" and vw.warnings == []
    assert _no_leftovers(tmp_path) == []
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.colorspace == 1  # tagged BT.709, so players need not guess
        assert video.average_rate == Fraction(25)
        assert c.metadata[LABEL_KEY].startswith("synthetic=1; tool=faceloom")
    back = [f.rgb for f in iter_video(out)]
    assert len(back) == len(g1_frames) == 75
    assert metrics.psnr(g1_frames[40], back[40]) > 35.0  # CRF 18: close to the source
    src_audio, out_audio = _audio(grid["g1"]), _audio(out)
    # MP4 tags MPEG-1 audio of any layer as object type 0x6B, which FFmpeg reads back as "mp3";
    # the packets are the MP2 packets of the source, byte for byte.
    assert out_audio.payloads == src_audio.payloads
    assert abs(out_audio.seconds - src_audio.seconds) <= src_audio.frame_seconds
    assert read_label(out) == {"synthetic": "1", "tool": f"faceloom {__version__}"}


def test_mkv_copies_mp2_audio_unchanged(
    tmp_path: Path, grid: dict[str, Path], g1_frames: list[np.ndarray]
) -> None:
    out = tmp_path / "swap.mkv"
    vw = _write_clip(out, g1_frames, grid["g1"], label_extra={"model": "original"})
    assert vw.audio_mode == "copy"
    src_audio, out_audio = _audio(grid["g1"]), _audio(out)
    assert out_audio.codec == src_audio.codec == "mp2"
    assert out_audio.payloads == src_audio.payloads
    assert out_audio.seconds == pytest.approx(src_audio.seconds)
    assert sum(1 for _ in iter_video(out)) == 75
    assert read_label(out) == {"synthetic": "1", "tool": f"faceloom {__version__}", "model": "original"}


def test_container_without_the_codec_gets_aac(tmp_path: Path, grid: dict[str, Path]) -> None:
    # .m4v (the "ipod" muxer) takes AAC but not MPEG-1 audio; a trimmed span of audio goes with it
    frames = [f.rgb for f in islice(iter_video(grid["g2"]), 25, 50)]  # 1.0 s .. 2.0 s
    out = tmp_path / "swap.m4v"
    vw = _write_clip(out, frames, grid["g2"], start_time=1.0, end_time=2.0)
    assert vw.audio_mode == "transcode" and vw.audio_codec == "aac"
    out_audio = _audio(out)
    assert out_audio.codec == "aac"
    assert out_audio.seconds == pytest.approx(1.0, abs=2 * out_audio.frame_seconds)
    assert sum(1 for _ in iter_video(out)) == 25
    assert read_label(out) is not None


def test_trimmed_copy_keeps_the_span(tmp_path: Path, grid: dict[str, Path]) -> None:
    frames = [f.rgb for f in islice(iter_video(grid["g3"]), 25, 50)]
    out = tmp_path / "cut.mkv"
    _write_clip(out, frames, grid["g3"], start_time=1.0, end_time=2.0)
    out_audio = _audio(out)
    assert out_audio.codec == "mp2"
    assert out_audio.seconds == pytest.approx(1.0, abs=out_audio.frame_seconds)
    with av.open(str(out)) as c:
        first = next(p for p in c.demux(c.streams.audio[0]) if p.size)
        assert first.pts is not None and first.time_base is not None
        assert abs(float(first.pts * first.time_base)) <= out_audio.frame_seconds


def test_silent_unlabelled_odd_sized_video(tmp_path: Path, g1_frames: list[np.ndarray]) -> None:
    out = tmp_path / "plain.mp4"
    frames = [f[:287, :359] for f in g1_frames[:10]]
    calls: list[int] = []

    def mark(rgb: np.ndarray, index: int) -> np.ndarray:
        calls.append(index)
        return rgb

    with VideoWriter(out, 29.97, (359, 287), synthetic=False, frame_filters=[mark]) as vw:
        for rgb in frames:
            vw.write(rgb)
        with pytest.raises(ValueError, match="writer expects 359x287"):
            vw.write(g1_frames[0])
    assert calls == list(range(10))
    assert vw.audio_mode is None
    assert read_label(out) is None
    with av.open(str(out)) as c:
        assert not c.streams.audio
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)
        assert (c.streams.video[0].width, c.streams.video[0].height) == (360, 288)  # padded to even


def _failing_hook(fail_on_call: int) -> Callable[[Path], None]:
    calls = {"n": 0}

    def hook(path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            raise OSError(errno.ENOSPC, "No space left on device")

    return hook


@pytest.mark.parametrize("fail_on_call", [1, 2], ids=["at-open", "at-finish"])
def test_video_write_failure_leaves_nothing(
    tmp_path: Path,
    grid: dict[str, Path],
    g1_frames: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    fail_on_call: int,
) -> None:
    out = tmp_path / "swap.mp4"
    monkeypatch.setattr(fsutil, "_write_hook", _failing_hook(fail_on_call))
    with pytest.raises(OutputError, match="no space left") as info:
        _write_clip(out, g1_frames[:10], grid["g1"])
    assert info.value.path == str(out)
    assert not out.exists()
    assert _no_leftovers(tmp_path) == []


def test_exception_inside_with_removes_the_temp_file(tmp_path: Path, g1_frames: list[np.ndarray]) -> None:
    out = tmp_path / "swap.mp4"
    with pytest.raises(RuntimeError, match="model crashed"), VideoWriter(out, 25, (360, 288)) as vw:
        for rgb in g1_frames[:5]:
            vw.write(rgb)
        assert len(_no_leftovers(tmp_path)) == 1  # the temp file, beside the target
        raise RuntimeError("model crashed")
    assert not out.exists()
    assert _no_leftovers(tmp_path) == []


def test_writer_errors(tmp_path: Path, g1_frames: list[np.ndarray]) -> None:
    with pytest.raises(OutputError, match="no frames"), VideoWriter(tmp_path / "empty.mp4", 25, (360, 288)):
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="cannot write"):
        VideoWriter(tmp_path / "missing" / "x.mp4", 25, (360, 288))
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", 0, (360, 288))


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_real_write_error_from_ffmpeg(
    tmp_path: Path, grid: dict[str, Path], g1_frames: list[np.ndarray]
) -> None:
    """A genuine failing write() inside FFmpeg (file size limit: EFBIG) becomes OutputError too."""
    import resource

    out = tmp_path / "swap.mp4"
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, old_limit[1]))
        with pytest.raises(OutputError, match="cannot write") as info:
            _write_clip(out, g1_frames, grid["g1"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert info.value.path == str(out)
    assert not out.exists()
    assert _no_leftovers(tmp_path) == []


def test_frame_times_keep_a_variable_rate_source_in_sync(tmp_path: Path, crema: list[Path]) -> None:
    # CREMA-D's FLV stores millisecond timestamps (33/34 ms steps, average rate 989/33)
    src = crema[0]
    frames = list(iter_video(src))
    out = tmp_path / "swap.mp4"
    info = probe_video(src)
    with VideoWriter(out, info.fps, (info.width, info.height), audio_from=src) as vw:
        for f in frames:
            vw.write(f.rgb, time=f.time)
    assert vw.fps == Fraction(30000, 1001)  # snapped from 29.97
    assert vw.audio_codec == "mp3" and vw.audio_mode == "copy"
    back = list(iter_video(out))
    assert len(back) == len(frames)
    start = frames[0].time
    np.testing.assert_allclose([b.time for b in back], [f.time - start for f in frames], atol=1e-4)
    late = VideoWriter(tmp_path / "x.mp4", 30, (480, 360))
    with pytest.raises(ValueError, match="before start_time"), late:
        late.write(frames[5].rgb, time=frames[5].time)
        late.write(frames[4].rgb, time=frames[0].time)


def test_pairs_the_muxer_refuses_are_transcoded(
    tmp_path: Path, grid: dict[str, Path], g1_frames: list[np.ndarray]
) -> None:
    # FFmpeg lists Opus as supported in MOV but refuses it when writing the header
    opus = tmp_path / "speech.ogg"
    with av.open(str(grid["g1"])) as src, av.open(str(opus), "w") as dst:
        enc = dst.add_stream("libopus", rate=48000, layout="stereo")
        assert isinstance(enc, av.audio.stream.AudioStream)
        for frame in src.decode(audio=0):
            frame.pts = None
            dst.mux(enc.encode(frame))
        dst.mux(enc.encode(None))
    for suffix, mode, codec in ((".mkv", "copy", "opus"), (".mov", "transcode", "aac")):
        vw = _write_clip(tmp_path / f"swap{suffix}", g1_frames[:25], grid["g1"], audio_from=opus)
        assert (vw.audio_mode, vw.audio_codec) == (mode, codec), suffix
        assert _audio(tmp_path / f"swap{suffix}").codec == codec
