"""Settings of `faceloom extract` (``[extract]`` in faceloom.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.choices import DetectorName, DeviceChoice, ImageFormat
from faceloom.config.meta import Settings, setting


@dataclass(frozen=True)
class ExtractConfig(Settings):
    """How faces are found, aligned and stored. Every field but ``device`` changes the faceset."""

    SECTION: ClassVar[str] = "extract"

    detector: DetectorName = setting("mediapipe", "Face detector backend.")
    size: int = setting(384, "Side of the stored head crop in pixels.", low=64, high=2048)
    every_n: int = setting(1, "Use every N-th frame of a video.", low=1)
    min_size: int = setting(40, "Ignore faces smaller than this many pixels.", low=0)
    max_faces_per_frame: int = setting(4, "Keep at most this many faces of one frame.", low=1)
    identity_refs: tuple[str, ...] = setting(
        (), "Reference image(s) of the person to keep (others are dropped).", flag="--identity", ui=False
    )
    identity_threshold: float = setting(
        0.6,
        "Max embedding distance to the reference (dlib: 0.6).",
        low=0.0,
        high=2.0,
        low_open=True,
        high_open=True,
    )
    blur_threshold: float = setting(0.0, "Drop faces blurrier than this score (0 = keep all).", low=0.0)
    image_format: ImageFormat = setting("jpg", "Crop image format.", flag="--format")
    jpeg_quality: int = setting(95, "JPEG quality of the stored crops.", low=1, high=100)
    rotate_retry: bool = setting(True, "Retry frames without a face turned by +-90 degrees.")
    device: DeviceChoice = setting(
        "auto", "Device for model work (detection runs on the CPU).", affects_output=False
    )
    identity_samples: int = setting(3, "Crops embedded per track for its identity.", low=1)
