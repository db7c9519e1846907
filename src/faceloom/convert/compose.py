"""Put new faces into their frames: mask, colour match, sharpen, paste; and the provenance filters
every converted frame goes through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from faceloom.config import ConvertConfig
from faceloom.convert.blend import add_frame_detail, paste_face, sharpen, soften_mask
from faceloom.convert.color import match_color
from faceloom.convert.frames import FaceJob, FrameJob
from faceloom.faces.masks import features_mask, hull_mask
from faceloom.media.credentials import Credentials
from faceloom.media.writer import FrameFilter


class Blender:
    """Mask, colour-match, sharpen and paste the new faces into their frames (one per thread)."""

    def __init__(self, config: ConvertConfig, has_mask: bool, out_size: tuple[int, int] | None) -> None:
        self.cfg = config
        mask = config.mask
        if mask == "auto":
            mask = "learned" if has_mask else "hull"
        self.mask_kind = mask
        self.out_size = out_size
        self.segmenter: Any = None
        if mask in ("segment", "both"):
            from faceloom.convert.segment import Segmenter

            self.segmenter = Segmenter()

    def face_mask(self, face: FaceJob) -> np.ndarray:
        """(R, R) float32 mask of where the new face goes."""
        size = face.crop.shape[0]
        if self.mask_kind == "hull" or (self.mask_kind == "both" and face.mask is None):
            mask = hull_mask(face.landmarks, size)
        elif self.mask_kind in ("learned", "both"):
            assert face.mask is not None
            # The learned mask shapes the edge; it never keeps the old face's eyes or mouth, which
            # a mask part-way through training leaves as holes (the swap would show A's own eyes).
            mask = np.maximum(face.mask, features_mask(face.landmarks, size))
        else:
            mask = hull_mask(face.landmarks, size)
        if self.segmenter is not None:
            mask = mask * self.segmenter.face_mask(face.crop)
        return np.asarray(mask, dtype=np.float32)

    def __call__(self, job: FrameJob) -> FrameJob:
        original = job.rgb
        frame = job.rgb.copy() if self.cfg.side_by_side else job.rgb
        source = job.rgb.copy() if self.cfg.frame_detail > 0 and not self.cfg.side_by_side else original
        for face in job.faces:
            if face.new is None:
                continue
            mask = soften_mask(self.face_mask(face), erode=self.cfg.erode, blur=self.cfg.blur)
            new = match_color(face.new, face.crop, mask, self.cfg.color)
            if self.cfg.sharpen > 0:
                new = sharpen(new, self.cfg.sharpen)
            frame = paste_face(frame, new, mask, face.matrix, self.cfg.blend)
            frame = add_frame_detail(frame, source, mask, face.matrix, self.cfg.frame_detail)
        out = np.hstack([original, frame]) if self.cfg.side_by_side else frame
        if self.out_size is not None and (out.shape[1], out.shape[0]) != self.out_size:
            out = cv2.resize(out, self.out_size, interpolation=cv2.INTER_AREA)
        job.out = out
        # The source frame is not needed past this point; drop it so queues hold one copy.
        job.faces = [FaceJob(f.track, f.matrix, f.landmarks, f.crop[:0]) for f in job.faces]
        return job

    def close(self) -> None:
        if self.segmenter is not None:
            self.segmenter.close()


def output_credentials(config: ConvertConfig, facts: Mapping[str, str | int | float]) -> Credentials:
    """The Content Credentials every converted output carries (signed by ``c2pa_cert`` / ``c2pa_key``,
    else by the local certificate)."""
    return Credentials(
        facts=dict(facts), cert=config.c2pa_cert, key=config.c2pa_key, enabled=config.credentials
    )


def output_filters(config: ConvertConfig) -> list[FrameFilter]:
    """The provenance filters every converted frame goes through."""
    from faceloom.provenance import visible_label_filter, watermark_filter

    filters: list[FrameFilter] = []
    if config.label == "visible":
        filters.append(visible_label_filter())
    if config.watermark:
        filters.append(watermark_filter())
    return filters


def output_size(width: int, height: int, config: ConvertConfig) -> tuple[int, int]:
    """(width, height) of the output frames of ``width`` x ``height`` input frames."""
    return scaled_size(width, height, config) or (width * (2 if config.side_by_side else 1), height)


def scaled_size(width: int, height: int, config: ConvertConfig) -> tuple[int, int] | None:
    w = width * (2 if config.side_by_side else 1)
    if config.scale == 1.0:
        return None
    return max(2, round(w * config.scale / 2) * 2), max(2, round(height * config.scale / 2) * 2)
