"""Typed stage configs: the CLI, faceloom.toml, the UI and stage fingerprints all read these."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

DeviceChoice = Literal["auto", "cpu", "cuda"]
DetectorName = Literal["mediapipe", "dlib", "dlib-cnn"]
ImageFormat = Literal["jpg", "png"]
SortKey = Literal["yaw", "pitch", "blur", "similarity", "size"]


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of the extract stage. Every field takes part in the stage fingerprint."""

    detector: DetectorName = "mediapipe"
    size: int = 384
    every_n: int = 1
    min_size: int = 40
    max_faces_per_frame: int = 4
    identity_refs: tuple[str, ...] = ()
    identity_threshold: float = 0.6
    blur_threshold: float = 0.0
    image_format: ImageFormat = "jpg"
    jpeg_quality: int = 95
    rotate_retry: bool = True
    device: DeviceChoice = "auto"
    identity_samples: int = 3

    def __post_init__(self) -> None:
        if self.size < 64 or self.size > 2048:
            raise ValueError(f"--size must be between 64 and 2048, got {self.size}")
        if self.every_n < 1:
            raise ValueError(f"--every-n must be at least 1, got {self.every_n}")
        if self.max_faces_per_frame < 1:
            raise ValueError(f"--max-faces-per-frame must be at least 1, got {self.max_faces_per_frame}")
        if not 0.0 < self.identity_threshold < 2.0:
            raise ValueError(f"--identity-threshold must be in (0, 2), got {self.identity_threshold}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractConfig:
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {
            k: (tuple(v) if k == "identity_refs" else v) for k, v in data.items() if k in known
        }
        return cls(**kwargs)

    def output_fingerprint(self) -> str:
        """Hash of the settings that change what is written (device and threads do not)."""
        data = self.to_dict()
        data.pop("device", None)
        return fingerprint(data)


def fingerprint(data: Any) -> str:
    """Stable short hash of JSON-able data."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the train stage. ``None`` means "the architecture's default"."""

    model: str = "loom"
    iterations: int | None = None
    minutes: float | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None
    seed: int = 0
    device: DeviceChoice = "auto"
    precision: Precision = "auto"
    flip_a: bool = True
    flip_b: bool = True
    warp: bool = True
    warp_strength: float | None = None
    ema_decay: float | None = None
    yaw_balance: bool = False
    gan: bool = False
    gan_weight: float = 0.1
    holdout_share: float = 0.1
    save_every: int = 250
    snapshot_every: int = 0
    preview_every: int = 250
    eval_every: int = 250
    log_every: int = 10
    init_from: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"--iterations must be at least 1, got {self.iterations}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"--minutes must be positive, got {self.minutes}")
        if self.warp_strength is not None and self.warp_strength < 0:
            raise ValueError(f"--warp-strength must be >= 0, got {self.warp_strength}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.holdout_share < 0.5:
            raise ValueError(f"--holdout-share must be in [0, 0.5), got {self.holdout_share}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


MaskChoice = Literal["auto", "hull", "learned", "segment", "both"]
BlendChoice = Literal["alpha", "seamless"]
ColorChoice = Literal["none", "rct", "lct", "hist"]
LabelChoice = Literal["none", "visible"]
SideChoice = Literal["a", "b"]


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of the convert stage. Every field but ``device`` and ``threads`` changes the output."""

    to: SideChoice = "b"
    mask: MaskChoice = "auto"
    erode: float = 0.0
    blur: float = 0.1
    blend: BlendChoice = "alpha"
    color: ColorChoice = "rct"
    sharpen: float = 0.0
    smooth: float = 1.0
    side_by_side: bool = False
    scale: float = 1.0
    codec: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    start: float | None = None
    end: float | None = None
    all_faces: bool = False
    identity_threshold: float = 0.6
    detector: DetectorName = "mediapipe"
    min_size: int = 24
    watermark: bool = True
    label: LabelChoice = "none"
    batch_size: int = 16
    device: DeviceChoice = "auto"
    precision: Precision = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0.05 <= self.scale <= 4.0:
            raise ValueError(f"--scale must be between 0.05 and 4, got {self.scale}")
        if not -0.5 < self.erode < 0.5:
            raise ValueError(f"--erode is a share of the face crop in (-0.5, 0.5), got {self.erode}")
        if not 0.0 <= self.blur < 0.5:
            raise ValueError(f"--blur is a share of the face crop in [0, 0.5), got {self.blur}")
        if self.smooth < 0:
            raise ValueError(f"--smooth must be 0 (off) or more, got {self.smooth}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.crf <= 63:
            raise ValueError(f"--crf must be between 0 and 63, got {self.crf}")
        if self.start is not None and self.start < 0:
            raise ValueError(f"--start must be 0 or more seconds, got {self.start}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"--end ({self.end}) must be after --start ({self.start})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvertConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def output_fingerprint(self) -> str:
        data = self.to_dict()
        for key in ("device", "threads"):
            data.pop(key, None)
        return fingerprint(data)


@dataclass(frozen=True)
class AnalyzeConfig:
    """Settings of the analyze stage of a workspace run (``[analyze]`` in faceloom.toml)."""

    strict: bool = False
    """Stop the run before training when the coverage report has any warning."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EarlyStopConfig:
    """When a workspace run stops training early (``[train]`` in faceloom.toml, beside TrainConfig).

    Every ``TrainConfig.eval_every`` steps the trainer scores held-out faces (mean masked SSIM of
    both sides); after ``patience`` such scores in a row without a gain of ``min_delta`` over the
    best so far, training stops. ``patience = 0`` turns the rule off.
    """

    patience: int = 4
    min_delta: float = 0.002

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise ValueError(f"patience must be 0 (off) or more, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be 0 or more, got {self.min_delta}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
