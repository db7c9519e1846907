"""What travels through the convert pipeline: frames, their faces, and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceloom.pipeline import PipelineStats


@dataclass
class FaceJob:
    """One face of one frame on its way through the stages.

    Attributes:
        matrix: (2, 3) frame -> model crop.
        landmarks: (68, 2) in model-crop pixels.
        crop: (R, R, 3) uint8 model input; ``new`` the model output, ``mask`` its learned mask.
    """

    track: int
    matrix: np.ndarray
    landmarks: np.ndarray
    crop: np.ndarray
    new: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class FrameJob:
    index: int
    time: float
    rgb: np.ndarray
    faces: list[FaceJob] = field(default_factory=list)
    found: int = 0  # faces detected, swapped or not
    out: np.ndarray | None = None


@dataclass
class ConvertResult:
    output: Path
    frames: int
    frames_with_swaps: int
    faces_swapped: int
    faces_left_alone: int
    stats: PipelineStats | None
    audio: str | None = None
    warnings: list[str] = field(default_factory=list)
    credentials: bool = False
    """Signed C2PA Content Credentials are in the output (every file of an image folder)."""
