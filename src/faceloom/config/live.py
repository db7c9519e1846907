"""Settings of `faceloom live` (``[live]`` in faceloom.toml); the swap itself takes convert's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.choices import LabelChoice, PredictBackend
from faceloom.config.meta import Settings, setting


@dataclass(frozen=True)
class LiveConfig(Settings):
    """How frames are taken, tracked and handed on in a live swap."""

    SECTION: ClassVar[str] = "live"

    realtime: bool = setting(
        True,
        "Play a video file source at its own frame rate, as a camera would deliver it "
        "(--no-realtime hands on every frame as fast as the swap takes them).",
    )
    detect_every: int = setting(
        5,
        "Run the face detector every N frames and follow the landmarks between (1 = detect every frame).",
        low=1,
    )
    in_flight: int = setting(
        2,
        "Frames on their way through the swap at once: more can raise frames/s, fewer lowers latency.",
        low=1,
        high=8,
        affects_output=False,
    )
    label: LabelChoice = setting(
        "visible", "visible adds a corner label (the default here: a live stream leaves the machine)."
    )
    backend: PredictBackend = setting(
        "auto", "Run the model with torch or onnxruntime; auto times both at start and keeps the faster."
    )
    stall: float = setting(
        5.0, "Stop with an error when the source delivers no frame for this many seconds.", low=0.1
    )
    duration: float | None = setting(
        None, "Stop after this many seconds.", low=0.0, low_open=True, unset="until the source ends or Ctrl-C"
    )
    stats_every: float = setting(
        1.0,
        "Report frames/s, dropped frames and latency every this many seconds.",
        low=0.1,
        affects_output=False,
    )
