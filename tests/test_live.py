"""`faceloom live` on real clips with the session's small model: a file source played in real time to
a file and to a local UDP stream (read back with PyAV), frames counted against the drops it reports,
the face changed, the background not, the watermark found; the tracker against the detector; bad
sources and outputs refused with one line; Ctrl-C keeps a playable file."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from faceloom.config import LiveConfig
from faceloom.errors import FormatError, InputError, OutputError
from faceloom.faces.detect import create_detector
from faceloom.live.capture import Capture, parse_source
from faceloom.live.session import run_live
from faceloom.live.tracking import track_points
from faceloom.media.reader import iter_video, probe_video
from faceloom.media.stream_writer import StreamWriter
from faceloom.media.writer import read_label
from faceloom.metrics import psnr
from faceloom.provenance.watermark import detect_watermark
from tests.media_helpers import read_frames, write_video

CLI = [sys.executable, "-m", "faceloom"]


def live(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "live", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def face_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    detector = create_detector("mediapipe")
    try:
        x0, y0, x1, y1 = detector.detect(np.ascontiguousarray(rgb))[0].bbox
        return int(x0), int(y0), int(x1), int(y1)
    finally:
        detector.close()


def check_swapped(source: np.ndarray, swapped: np.ndarray, min_psnr: float) -> None:
    """The face changed; pixels well clear of it did not, beyond codec noise and the watermark."""
    x0, y0, x1, y1 = face_box(source)
    h, w = source.shape[:2]
    m = (x1 - x0) // 2 + 10
    far = np.ones((h, w), np.float32)
    far[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m] = 0
    far[h - 40 :, : w // 2] = 0  # the visible label's corner
    assert far.mean() > 0.25
    assert psnr(source, swapped, mask=far) > min_psnr
    inner = (slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 8), slice(x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5))
    diff = np.abs(source[inner].astype(np.float32) - swapped[inner].astype(np.float32)).mean()
    assert diff > 4.0, "the face was not replaced"


def check_count(summary: dict[str, Any], received: int, source_frames: int) -> None:
    """Every frame the source gave reached the output or was counted as dropped, but for the few in
    flight when the source ended."""
    assert summary["delivered"] == source_frames
    assert received == summary["frames"]
    in_flight = source_frames - summary["frames"] - summary["dropped"]
    assert 0 <= in_flight <= 4, summary
    assert summary["dropped_share"] == pytest.approx(summary["dropped"] / source_frames, abs=1e-3)


@pytest.fixture(scope="module")
def to_file(
    grid: dict[str, Path], trained_lite: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("live")
    out, log = folder / "live.mp4", folder / "live.jsonl"
    proc = live(
        "-m", trained_lite, "-s", grid["g3b"], "-o", out, "--json", "--log", log, "--stats-every", "0.5"
    )
    return {"summary": summary_of(proc), "out": out, "log": log}


def test_file_to_file_swaps_each_frame_it_keeps(grid: dict[str, Path], to_file: dict[str, Any]) -> None:
    summary, out = to_file["summary"], to_file["out"]
    source = read_frames(grid["g3b"])
    fps = probe_video(grid["g3b"]).fps
    frames = list(iter_video(out))
    check_count(summary, len(frames), len(source))
    assert summary["faces"] == summary["frames"] and summary["backend"] in ("torch", "onnx")
    assert summary["tracks"] == 1
    assert summary["detections"] + summary["tracked"] >= summary["frames"]
    assert summary["tracked"] > 0 and summary["detections"] >= summary["frames"] // 5
    assert set(summary["stage_ms"]) == {"find", "predict", "blend", "output"}
    # Output frames sit at their source frames' times, so each is compared with the frame it replaced.
    for f in frames[::12]:
        check_swapped(source[round(f.time * fps)], f.rgb, 34.0)
    lines = [json.loads(x) for x in to_file["log"].read_text().splitlines()]
    assert lines and all(x["fps"] > 0 and "latency_ms_p95" in x for x in lines[1:])


def test_file_output_is_marked(to_file: dict[str, Any]) -> None:
    label = read_label(to_file["out"])
    assert label is not None and label.get("synthetic") == "1" and label.get("live") == "1"
    proc = subprocess.run(
        [*CLI, "verify", to_file["out"], "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["watermark"]["found"]


def test_file_to_udp_stream(grid: dict[str, Path], trained_lite: Path) -> None:
    port = free_port()
    received: list[av.VideoFrame] = []

    def read() -> None:
        url = f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1"
        with av.open(url, format="mpegts", timeout=(120, 4)) as c:
            try:
                for frame in c.decode(video=0):
                    received.append(frame)
            except av.error.ExitError:  # nothing for 4 s: the sender is done
                pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    proc = live("-m", trained_lite, "-s", grid["g3b"], "-o", f"udp://127.0.0.1:{port}", "--json")
    reader.join(timeout=30)
    summary = summary_of(proc)
    source = read_frames(grid["g3b"])
    check_count(summary, len(received), len(source))
    rgb = [f.to_ndarray(format="rgb24") for f in received]
    assert rgb[0].shape == source[0].shape
    assert detect_watermark(rgb).found
    fps = probe_video(grid["g3b"]).fps
    for f, img in list(zip(received, rgb, strict=True))[5::20]:
        check_swapped(source[round(float(f.time) * fps)], img, 30.0)


def test_tracker_follows_the_detector(grid: dict[str, Path]) -> None:
    """Landmarks carried by optical flow over four frames stay within a few pixels of the detector's."""
    frames = read_frames(grid["g3b"], limit=40)
    detector = create_detector("mediapipe")
    try:
        found = [detector.detect(f)[0].landmarks for f in frames]
    finally:
        detector.close()
    import cv2

    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    errors = []
    for start in range(0, 36, 4):
        points = found[start]
        for k in range(start + 1, start + 5):
            moved = track_points(grey[k - 1], grey[k], points)
            assert moved is not None, f"lost at frame {k}"
            points = moved
            errors.append(float(np.linalg.norm(points - found[k], axis=1).mean()))
    face = float(np.ptp(found[0][:, 0]))
    assert np.mean(errors) < 0.03 * face, (np.mean(errors), face)
    assert track_points(grey[0], np.zeros_like(grey[1]), found[0]) is None, "a blank frame must lose the face"


def test_capture_drops_only_in_real_time(grid: dict[str, Path]) -> None:
    """Played in real time, a slow consumer gets the newest frame and the rest count as dropped;
    with realtime off it gets every frame in order."""
    spec = parse_source(str(grid["g3b"]))
    cap = Capture(spec, realtime=True)
    cap.start()
    taken = []
    try:
        while (frame := cap.next()) is not None:
            taken.append(frame.index)
            time.sleep(0.1)  # 2.5 frame times
    finally:
        cap.close()
    assert cap.delivered == 75 and cap.dropped == 75 - len(taken)
    assert 20 <= len(taken) <= 40 and max(np.diff(taken)) >= 2
    cap = Capture(spec, realtime=False)
    cap.start()
    try:
        every = []
        while (frame := cap.next()) is not None:
            every.append(frame.index)
    finally:
        cap.close()
    assert every == list(range(75)) and cap.dropped == 0


def test_bad_sources_and_outputs(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    """Each refused before the model loads, naming the thing; the CLI says it in one line, exit 2."""
    out, taken = tmp_path / "o.mp4", tmp_path / "taken.mp4"
    taken.write_bytes(b"a user's file")
    model = str(trained_lite)
    with pytest.raises(InputError, match="no camera there"):
        run_live(model, "/dev/video97", str(out))
    with pytest.raises(InputError, match="not found"):
        run_live(model, str(tmp_path / "missing.mp4"), str(out))
    with pytest.raises(OutputError, match="not an output faceloom live knows"):
        run_live(model, str(grid["g3b"]), str(tmp_path / "o.txt"))
    with pytest.raises(OutputError, match="exists"):
        run_live(model, str(grid["g3b"]), str(taken))
    future = tmp_path / "future"
    future.mkdir()
    meta = json.loads((trained_lite / "model.json").read_text())
    (future / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(FormatError, match="version 99"):
        run_live(str(future), str(grid["g3b"]), str(out))
    assert not out.exists() and taken.read_bytes() == b"a user's file"
    proc = live("-m", trained_lite, "-s", "/dev/video97", "-o", out, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: /dev/video97: no camera there (is it plugged in, or in use by another program?)"
    ]


def _bound(port: int) -> bool:
    return any(f":{port:04X} " in line for line in Path("/proc/net/udp").read_text().splitlines()[1:])


def test_a_stream_that_stalls_ends_with_one_line_and_keeps_the_file(
    grid: dict[str, Path], trained_lite: Path, tmp_path: Path
) -> None:
    """The sender stops after 3 s: live reports the stall (exit 2) and the file holds what came."""
    port, out = free_port(), tmp_path / "stalled.mp4"
    cmd = [
        *CLI,
        "live",
        "-m",
        str(trained_lite),
        "-s",
        f"udp://127.0.0.1:{port}",
        "-o",
        str(out),
        "--stall",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _bound(port):
            assert proc.poll() is None and time.monotonic() < deadline, "live never opened the stream"
            time.sleep(0.1)
        frames = read_frames(grid["g3b"])
        with StreamWriter(f"udp://127.0.0.1:{port}", 25, (frames[0].shape[1], frames[0].shape[0])) as sender:
            for k, f in enumerate(frames):
                sender.write(f, k / 25)
                time.sleep(0.04)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2 and "stalled" in stderr, stderr
    assert (
        stderr.strip().splitlines()[-1]
        == f"error: udp://127.0.0.1:{port}: no frame for 2 s: the source stalled"
    )
    assert 20 <= len(read_frames(out)) <= 75


def test_ctrl_c_keeps_a_playable_file(grid: dict[str, Path], trained_lite: Path, tmp_path: Path) -> None:
    long = write_video(tmp_path / "long.mp4", read_frames(grid["g3b"]) * 4)
    out, log = tmp_path / "stopped.mp4", tmp_path / "log.jsonl"
    cmd = [
        *CLI,
        "live",
        "-m",
        str(trained_lite),
        "-s",
        str(long),
        "-o",
        str(out),
        "--log",
        str(log),
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and summary["delivered"] < 250
    frames = read_frames(out)
    assert len(frames) == summary["frames"] >= 20
    assert read_label(out) is not None


def test_stream_carries_the_label_in_its_service_name(grid: dict[str, Path]) -> None:
    """MPEG-TS has no free-form tags: the label rides in the service description players show."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2)
        frames = read_frames(grid["g3b"], limit=10)
        url = f"udp://127.0.0.1:{rx.getsockname()[1]}"
        with StreamWriter(url, 25, (frames[0].shape[1], frames[0].shape[0]), label_extra={"live": 1}) as tx:
            for k, f in enumerate(frames):
                tx.write(f, k / 25)
        data = b""
        with contextlib.suppress(TimeoutError):
            while True:
                data += rx.recv(65536)
    assert b"faceloom (synthetic)" in data and b"synthetic=1; tool=faceloom" in data
    assert len(data) > 10 * 188


def test_window_and_virtual_camera_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceloom.live.sinks import open_sink
    from faceloom.media.credentials import Credentials

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    kw: dict[str, Any] = {"fps": 25.0, "size": (64, 64), "filters": [], "label_extra": {}}
    kw["credentials"] = Credentials(facts={}, enabled=False)
    with pytest.raises(OutputError, match="no display here"):
        open_sink("window", **kw)
    try:
        import pyvirtualcam  # noqa: F401
    except ImportError:
        with pytest.raises(
            OutputError, match=r"pyvirtualcam is not installed: pip install 'faceloom\[virtualcam\]'"
        ):
            open_sink("virtualcam", **kw)


def test_a_slow_output_drops_frames_but_keeps_the_track(grid: dict[str, Path], trained_lite: Path) -> None:
    """Frames dropped at the source are not gaps in the face's track: one person, one track, one
    identity check, however many frames a slow output lets go by."""
    shown: list[float] = []

    def slow(rgb: np.ndarray, t: float) -> None:
        time.sleep(0.25)  # six frame times of a 25 frames/s clip
        shown.append(t)

    result = run_live(str(trained_lite), str(grid["g3b"]), slow, live=LiveConfig(in_flight=1))
    assert result.total.frames == len(shown) >= 8
    # the source's own clock: most steps skip six frames or so (fewer where its reading ran late)
    assert result.total.dropped_share > 0.6 and float(np.median(np.diff(shown))) >= 0.2
    assert result.tracks == 1 and result.total.faces == len(shown)


def test_settings_change_while_running(grid: dict[str, Path], trained_lite: Path) -> None:
    """The UI's controls: after ``to=a`` the session renders A, so A's own face (GRID g3) is no
    longer a face to swap; refused changes say why."""
    from faceloom.config.meta import SettingError
    from faceloom.live.session import LiveControls

    controls = LiveControls()
    seen: list[int] = []

    def out(rgb: np.ndarray, t: float) -> None:
        seen.append(len(seen))
        if len(seen) == 15:
            controls.change({"to": "a", "color": "none"})

    live_cfg = LiveConfig(realtime=False, stats_every=1000.0)
    result = run_live(str(trained_lite), str(grid["g3b"]), out, live=live_cfg, controls=controls)
    assert result.total.frames == 75 and result.total.dropped == 0
    assert 15 <= result.total.faces <= 15 + 2 * live_cfg.in_flight, result.total.faces
    assert controls.config.to == "a" and controls.config.color == "none"
    with pytest.raises(SettingError, match="cannot change while live"):
        controls.change({"scale": 0.5})
    with pytest.raises(SettingError, match="no learned mask"):
        controls.change({"mask": "learned"})
