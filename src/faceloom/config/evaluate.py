"""Settings of `faceloom eval` (``[eval]`` in faceloom.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.choices import DetectorName, DeviceChoice
from faceloom.config.meta import Settings, setting


@dataclass(frozen=True)
class EvalConfig(Settings):
    SECTION: ClassVar[str] = "eval"

    seed: int = setting(0, "Seed for sampling faces and torch.")
    device: DeviceChoice = setting("auto", "Device for the model.", affects_output=False)
    max_faces: int = setting(
        64, "Held-out faces per side at most; more are sampled (with the seed) down to this.", low=1
    )
    detector: DetectorName = setting("mediapipe", "Landmark detector for pose, expression and flicker.")
    pose: bool = setting(True, "Measure pose and expression (needs the landmark detector).")
