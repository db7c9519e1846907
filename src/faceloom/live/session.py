"""One live session: frames from a source through find, predict and blend to a sink, as they come.

    capture (own thread, newest frame only) | find: detect or track, align | predict (batch 1)
      | blend: mask, colour, paste | output: label, watermark, encode (calling thread)

Each stage runs in its own thread, so the stages overlap; at most ``in_flight`` frames are on their
way at once, and a new one is taken from the source only when one has left. The capture never
waits: it replaces the frame nobody has taken yet (counted as dropped). So frames wait only at the
source, never between stages, and latency (capture to the frame leaving the sink) stays short.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from faceloom.config import ConvertConfig, LiveConfig
from faceloom.convert.compose import Blender, output_credentials, output_filters, output_size, scaled_size
from faceloom.convert.face_swapper import FaceSwapper, predict_chunk
from faceloom.convert.frames import FrameJob
from faceloom.convert.smoothing import TrackSmoother
from faceloom.convert.swapper import open_swapper
from faceloom.errors import FaceloomError
from faceloom.live.backend import can_retarget, pick_backend, retarget
from faceloom.live.capture import Capture, CapturedFrame, check_source, parse_source
from faceloom.live.sinks import CallbackSink, FrameSink, check_target, open_sink
from faceloom.live.tracking import LiveFaceFinder
from faceloom.pipeline import get_unless_stopped, put_unless_stopped

STAGES = ("find", "predict", "blend", "output")
_END = object()


class FrameSource(Protocol):
    """What a session takes frames from: :class:`~faceloom.live.capture.Capture` (a device, stream
    or file) or :class:`~faceloom.live.capture.PushSource` (frames handed in, as the UI does)."""

    fps: float
    size: tuple[int, int]
    start_time: float

    @property
    def delivered(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    def start(self) -> None: ...

    def next(self, stop: threading.Event | None = None) -> CapturedFrame | None: ...

    def close(self) -> None: ...


class LiveControls:
    """Swap settings changed while a session runs (the UI's Live screen); the next frame takes them."""

    CHANGEABLE = ("to", "mask", "color", "smooth", "blur", "erode")

    def __init__(self) -> None:
        self.config = ConvertConfig()
        self.has_mask = True
        self.fixed_to = False
        self._pending: ConvertConfig | None = None
        self._lock = threading.Lock()

    def change(self, values: dict[str, Any]) -> ConvertConfig:
        """Check ``values`` against the settings' own rules and queue them.

        Raises:
            SettingError: an unknown, unchangeable or refused value.
        """
        from faceloom.config.meta import SettingError

        for key in values:
            if key not in self.CHANGEABLE:
                raise SettingError(
                    f"convert.{key}", f"cannot change while live; one of {', '.join(self.CHANGEABLE)}"
                )
        if self.fixed_to and values.get("to", self.config.to) != self.config.to:
            raise SettingError("convert.to", f"this model renders person {self.config.to.upper()} only")
        if values.get("mask") in ("learned", "both") and not self.has_mask:
            raise SettingError("convert.mask", "this model has no learned mask (use hull or segment)")
        with self._lock:
            new = ConvertConfig.from_values({**self.config.to_dict(), **values})
            self.config = self._pending = new
        return new

    def take(self) -> ConvertConfig | None:
        with self._lock:
            new, self._pending = self._pending, None
            return new


@dataclass
class LiveReport:
    """Figures over one reporting interval, or over the whole run."""

    seconds: float
    frames: int
    """Frames that reached the output."""
    fps: float
    delivered: int
    """Frames the source gave."""
    dropped: int
    dropped_share: float
    latency_ms_p50: float
    latency_ms_p95: float
    stage_ms: dict[str, float]
    """Mean busy milliseconds per frame of each stage."""
    faces: int
    """Faces swapped."""

    def slowest(self) -> str:
        return max(self.stage_ms, key=lambda k: self.stage_ms[k]) if self.stage_ms else ""


@dataclass
class LiveResult:
    output: str
    total: LiveReport
    backend: str
    """What ran the model: torch or onnx."""
    backend_ms: dict[str, float]
    """Batch-1 milliseconds of each backend, where both were timed."""
    detections: int
    tracked: int
    tracks: int
    """Face tracks started: one per person and shot when tracking holds."""
    source_fps: float
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Now:
    """The settings and model the next frame gets."""

    config: ConvertConfig
    swapper: FaceSwapper


@dataclass
class _Item:
    frame: CapturedFrame
    job: FrameJob
    config: ConvertConfig
    swapper: FaceSwapper
    ms: dict[str, float] = field(default_factory=dict)


class _Meter:
    """Latency and stage times of the frames that reached the output."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.latency: list[float] = []
        self.stage: dict[str, list[float]] = {s: [] for s in STAGES}
        self.faces = 0
        self.mark = (self.start, 0, 0, 0)  # time, frames, delivered, dropped at the last report

    def add(self, item: _Item, done: float) -> None:
        self.latency.append((done - item.frame.captured) * 1000)
        for s in STAGES:
            self.stage[s].append(item.ms.get(s, 0.0))
        self.faces += len(item.job.faces)

    def report(self, capture: FrameSource, since: tuple[float, int, int, int] | None = None) -> LiveReport:
        now = time.monotonic()
        t0, n0, d0, x0 = since or (self.start, 0, 0, 0)
        lat = np.asarray(self.latency[n0:]) if len(self.latency) > n0 else np.zeros(1)
        frames = len(self.latency) - n0
        delivered, dropped = capture.delivered - d0, capture.dropped - x0
        seconds = max(now - t0, 1e-9)
        return LiveReport(
            seconds=round(seconds, 3),
            frames=frames,
            fps=round(frames / seconds, 2),
            delivered=delivered,
            dropped=dropped,
            dropped_share=round(dropped / delivered, 4) if delivered else 0.0,
            latency_ms_p50=round(float(np.percentile(lat, 50)), 1),
            latency_ms_p95=round(float(np.percentile(lat, 95)), 1),
            stage_ms={
                s: round(float(np.mean(v[n0:])), 2) if len(v) > n0 else 0.0 for s, v in self.stage.items()
            },
            faces=self.faces,
        )

    def interval(self, capture: FrameSource) -> LiveReport:
        rep = self.report(capture, self.mark)
        self.mark = (time.monotonic(), len(self.latency), capture.delivered, capture.dropped)
        return rep


def run_live(
    model: str,
    source: str | FrameSource,
    output: str | Callable[[np.ndarray, float], None],
    config: ConvertConfig | None = None,
    live: LiveConfig | None = None,
    *,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
    on_report: Callable[[LiveReport], None] | None = None,
    swapper: FaceSwapper | None = None,
    controls: LiveControls | None = None,
) -> LiveResult:
    """Swap faces live from ``source`` (a camera, stream URL or video file, or frames pushed in) to
    ``output``: a file, stream, window or virtual camera (see :func:`open_sink`), or a callable that
    gets each finished frame, watermarked and labelled like every output, with its time.

    Runs until the source ends, ``live.duration`` passes, ``cancel`` is set or Ctrl-C (which ends the
    session cleanly: the output is closed and playable). ``on_report`` gets the figures of each
    ``live.stats_every`` seconds; ``controls`` takes setting changes while it runs.

    Raises:
        InputError: no camera, a source that breaks off or stalls; OutputError: the output exists or
        cannot be written; FormatError: a model of another version.
    """
    live = live or LiveConfig()
    config = dataclasses.replace(config or ConvertConfig(), label=live.label)
    cancel = cancel or threading.Event()
    if isinstance(output, str):
        check_target(output, overwrite)
    if isinstance(source, str):
        check_source(parse_source(source))
    if swapper is None:
        swapper = open_swapper(model, config)
    swapper, backend, backend_ms = pick_backend(swapper, live.backend, config.threads)
    finder = LiveFaceFinder(swapper, config, live.detect_every)
    finder.warm_up()
    try:
        capture: FrameSource = (
            Capture(parse_source(source), realtime=live.realtime, stall=live.stall)
            if isinstance(source, str)
            else source
        )
    except BaseException:
        finder.close()
        raise
    try:
        blenders = [Blender(config, swapper.has_mask, scaled_size(*capture.size, config))]
        sink: FrameSink
        if not isinstance(output, str):
            sink = CallbackSink(output, output_filters(config))
        else:
            sink = open_sink(
                str(output),
                fps=capture.fps,
                size=output_size(*capture.size, config),
                filters=output_filters(config),
                label_extra={"model": swapper.name, "to": config.to, "live": 1},
                credentials=output_credentials(config, swapper.facts()),
                start_time=capture.start_time,
                overwrite=overwrite,
            )
    except BaseException:
        capture.close()
        finder.close()
        raise
    stop = threading.Event()
    errors: list[BaseException] = []
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=live.in_flight) for _ in range(3)]
    # A frame is taken from the source only when fewer than in_flight are on their way: frames wait
    # at the source (where a newer one replaces them), not between stages, so latency stays short.
    slots = threading.Semaphore(live.in_flight)

    if controls is not None:
        controls.config, controls.has_mask = config, swapper.has_mask
        controls.fixed_to = not can_retarget(swapper)
    current = _Now(config, swapper)

    def take_changes() -> None:
        new = controls.take() if controls is not None else None
        if new is None:
            return
        if new.to != current.config.to:
            current.swapper = retarget(current.swapper, new.to)
            finder.swapper = current.swapper
            finder.decisions.clear()
        if new.smooth != current.config.smooth:
            finder.smoother = TrackSmoother(new.smooth)
        finder.cfg = current.config = new

    def find() -> None:
        taken = 0  # frames taken, not frames delivered: the tracker's gaps count frames it saw
        while not stop.is_set():
            if not slots.acquire(timeout=0.05):
                continue
            frame = capture.next(stop)
            if frame is None:
                put_unless_stopped(queues[0], _END, stop)
                return
            take_changes()
            t = time.perf_counter()
            job = finder(FrameJob(taken, frame.time, frame.rgb))
            taken += 1
            item = _Item(frame, job, current.config, current.swapper)
            item.ms["find"] = (time.perf_counter() - t) * 1000
            if not put_unless_stopped(queues[0], item, stop):
                return

    def relay(name: str, work: Callable[[_Item], None], inbox: int) -> Callable[[], None]:
        """A stage: take from ``queues[inbox]``, do ``work``, hand on to the next queue."""

        def run() -> None:
            while True:
                item = get_unless_stopped(queues[inbox], stop, _END, wait=0.05)
                if item is _END:
                    put_unless_stopped(queues[inbox + 1], _END, stop)
                    return
                t = time.perf_counter()
                work(item)
                item.ms[name] = (time.perf_counter() - t) * 1000
                if not put_unless_stopped(queues[inbox + 1], item, stop):
                    return

        run.__name__ = name
        return run

    def predict(item: _Item) -> None:
        predict_chunk(item.swapper, [item.job])

    def blend(item: _Item) -> None:
        if item.config is not blenders[-1].cfg:
            blenders.append(Blender(item.config, swapper.has_mask, scaled_size(*capture.size, item.config)))
        blenders[-1](item.job)

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        return run

    threads = [
        threading.Thread(target=guarded(f), name=f"live-{f.__name__}", daemon=True)
        for f in (find, relay("predict", predict, 0), relay("blend", blend, 1))
    ]
    meter = _Meter()
    interrupted = sink_broke = False
    close_error: FaceloomError | None = None
    capture.start()
    for th in threads:
        th.start()
    next_report = time.monotonic() + live.stats_every
    try:
        while not errors:
            if cancel.is_set() or (
                live.duration is not None and time.monotonic() - meter.start >= live.duration
            ):
                break
            try:
                item = queues[2].get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is _END:
                break
            if item is not None:
                t = time.perf_counter()
                try:
                    sink.write(item.job.out, item.frame.time)
                except Exception:
                    sink_broke = True
                    raise
                item.ms["output"] = (time.perf_counter() - t) * 1000
                meter.add(item, time.monotonic())
                slots.release()
                if sink.done:
                    break
            if on_report is not None and time.monotonic() >= next_report:
                next_report += live.stats_every
                on_report(meter.interval(capture))
    except KeyboardInterrupt:
        interrupted = True  # between two frames or inside a write: the output is closed either way
    finally:
        stop.set()
        capture.close()
        for th in threads:
            th.join(timeout=10)
        finder.close()
        for b in blenders:
            b.close()
        if not sink_broke:
            try:
                sink.close()
            except FaceloomError as exc:
                close_error = exc
    if errors:
        raise errors[0]
    if close_error is not None and meter.latency:
        raise close_error
    warnings = []
    if not meter.latency:
        warnings.append(f"{source}: no frame reached the output; nothing was written")
    elif meter.faces == 0:
        warnings.append(f"{source}: no face of the source person was found; frames went out unchanged")
    return LiveResult(
        output=output if isinstance(output, str) else "callback",
        total=meter.report(capture),
        backend=backend,
        backend_ms={k: round(v, 2) for k, v in backend_ms.items()},
        detections=finder.detections,
        tracked=finder.tracked,
        tracks=finder.tracker.next_id,
        source_fps=capture.fps,
        interrupted=interrupted or cancel.is_set(),
        warnings=warnings,
    )
