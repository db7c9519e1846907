"""What conversion needs of a model, whatever made it: :class:`FaceSwapper`."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from faceloom.config.choices import CropType, Side
from faceloom.convert.frames import FrameJob


class FaceSwapper(ABC):
    """What conversion needs of a model: the crop it takes, a label, and faces in, faces out."""

    resolution: int
    crop_type: CropType
    has_mask: bool
    name: str
    """The architecture, for the visible label and the Content Credentials."""
    to: Side
    source: Side
    embeddings: dict[str, np.ndarray | None]
    """Mean identity embedding of each person, where known; None swaps every face found."""

    @abstractmethod
    def facts(self) -> dict[str, str | int | float]:
        """What the outputs' Content Credentials say of the model: no faces, no paths."""

    @abstractmethod
    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Args: crops (N, R, R, 3) uint8 RGB. Returns faces (N, R, R, 3) uint8 and masks (N, R, R)
        float32 (None without a learned mask)."""


def predict_chunk(swapper: FaceSwapper, chunk: list[FrameJob]) -> list[FrameJob]:
    faces = [f for job in chunk for f in job.faces]
    if faces:
        new, masks = swapper.predict(np.stack([f.crop for f in faces]))
        for k, f in enumerate(faces):
            f.new = new[k]
            f.mask = masks[k] if masks is not None else None
    return chunk
