"""`faceloom verify`: does a file carry Content Credentials, faceloom's label or its watermark?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from faceloom.errors import InputError
from faceloom.media.credentials import CredentialsReport, read_credentials
from faceloom.provenance.watermark import DEFAULT_WATERMARK, Watermark, WatermarkResult

MAX_VIDEO_SAMPLES = 60
"""Frames of a video that :func:`verify` looks at, spread over the whole file."""


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found in a file.

    Attributes:
        path: the file.
        kind: ``"video"`` or ``"image"``.
        label: the fields of faceloom's metadata label, or None without one.
        watermark: the watermark detection.
        credentials: the C2PA manifest as the C2PA library validated it, or None without one.
    """

    path: Path
    kind: Literal["video", "image"]
    label: dict[str, str] | None
    watermark: WatermarkResult
    credentials: CredentialsReport | None = None

    @property
    def synthetic(self) -> bool:
        """True if the file carries the watermark, the label, or a valid manifest that says so."""
        manifest = self.credentials is not None and self.credentials.valid and self.credentials.synthetic
        return self.watermark.found or self.label is not None or manifest

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "synthetic": self.synthetic,
            "label": self.label,
            "watermark": {
                "found": self.watermark.found,
                "score": round(self.watermark.score, 2),
                "threshold": self.watermark.threshold,
                "frames": self.watermark.frames,
                "visible_region": self.watermark.region if self.watermark.found else None,
            },
            "c2pa": self.credentials.to_dict() if self.credentials is not None else {"present": False},
        }


def _video_frames(path: Path, limit: int) -> list[np.ndarray]:
    from faceloom.media.reader import iter_video, probe_video

    info = probe_video(path)
    every_n = max(1, math.ceil(info.frames / limit)) if info.frames > 0 else 1
    frames: list[np.ndarray] = []
    for frame in iter_video(path, every_n=every_n):
        frames.append(frame.rgb)
        if len(frames) >= limit:
            break
    return frames


def verify(path: str | Path, watermark: Watermark = DEFAULT_WATERMARK) -> VerifyResult:
    """Check a video or image for a C2PA manifest, faceloom's label and its watermark.

    Videos: up to :data:`MAX_VIDEO_SAMPLES` frames spread evenly over the file (every frame is
    decoded, so time grows with the file's length). Images: the one picture.

    Raises:
        InputError: the file is missing or is not a readable video or image, naming it.
    """
    from faceloom.media.reader import read_image
    from faceloom.media.sources import classify
    from faceloom.media.writer import read_label

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    kind = classify(path)
    frames: list[np.ndarray]
    if kind == "image":
        frames = [read_image(path)]
    else:
        try:
            frames = _video_frames(path, MAX_VIDEO_SAMPLES)
        except InputError as video_error:
            try:  # an image under a video-like or unknown suffix
                frames = [read_image(path)]
            except InputError:
                raise video_error from None
            kind = "image"
    label = read_label(path)
    return VerifyResult(
        path=path,
        kind=kind,
        label=label,
        watermark=watermark.detect(frames),
        credentials=read_credentials(path),
    )
