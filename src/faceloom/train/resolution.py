"""How many pixels of real detail a faceset's faces hold, the model side picked from them, and the
warning when a faceset's crops are too small for the side chosen."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceloom.config.choices import CropType
from faceloom.config.meta import SettingError
from faceloom.faces.align import CROP_REGIONS
from faceloom.faces.faceset import Faceset
from faceloom.train.models.base import FaceSwapModel

UPSCALE_ALLOWED = 1.15
"""A side is picked while the faces hold at least 1/1.15 of its pixels: a few percent of upscaling
loses little, and the next side up costs about 1.6-2.3x the compute."""


@dataclass(frozen=True)
class CropDetail:
    """Median side (px) of one crop type across a faceset's faces.

    ``stored``: what the faceset's stored crops hold of that region; ``source``: what the frames
    held; ``px``: the smaller of the two, the detail a model can learn from.
    """

    stored: float
    source: float

    @property
    def px(self) -> float:
        return min(self.stored, self.source)


def crop_detail(fs: Faceset, crop: CropType) -> CropDetail:
    """The median pixels of the ``crop`` region in ``fs``'s stored crops and in the source frames."""
    share = CROP_REGIONS[crop].side / CROP_REGIONS[fs.crop].side  # type: ignore[index]
    stored, source = [], []
    for rec in fs.records:
        m = rec.matrix_array
        per_frame_px = math.sqrt(abs(float(np.linalg.det(m[:, :2])))) or 1.0  # stored px per frame px
        stored.append(rec.size * share)
        source.append(rec.size * share / per_frame_px)
    if not stored:
        return CropDetail(0.0, 0.0)
    return CropDetail(float(np.median(stored)), float(np.median(source)))


def pick_resolution(offered: tuple[int, ...], detail_px: float) -> int:
    """The largest offered side the faces fill (within :data:`UPSCALE_ALLOWED`), else the smallest."""
    fitting = [r for r in offered if r <= detail_px * UPSCALE_ALLOWED]
    return max(fitting) if fitting else min(offered)


CPU_AUTO_SIDE = 128
"""The largest side picked by itself on a CPU. On 2 CPU cores, 10 minutes of training each (GRID s4
at 720x576 against g1 + s1_more, benchmarks/quality.py), loom at 256 px made 128 steps against 450
at 128 px and its swaps had 0.24 of the real faces' detail against 0.59-0.77: far blurrier. A long
run on a CPU may still ask for more with --resolution."""


def model_side(
    cls: type[FaceSwapModel], wanted: int | None, video_faces: Faceset, crop: CropType, device: str = "cpu"
) -> tuple[int, list[str]]:
    """The side a new model is built at, and a note when the faces would fill a larger one: ``wanted``;
    else, for an architecture that picks its side from the faces, the largest side it offers that
    A's faces (the video's, where the swap is pasted) fill, on a CPU at most :data:`CPU_AUTO_SIDE`;
    else its default.

    Raises:
        SettingError: ``wanted`` is not one of the sides the architecture offers.
    """
    offered = cls.resolutions
    if wanted is not None:
        if wanted not in offered:
            sides = ", ".join(str(r) for r in offered)
            raise SettingError(
                "train.resolution", f"must be one of {sides} for this architecture, got {wanted}"
            )
        return wanted, []
    if not cls.side_from_faces:
        return offered[0], []
    detail = crop_detail(video_faces, crop).px
    side = pick_resolution(offered, detail)
    if device != "cpu" or side <= CPU_AUTO_SIDE:
        return side, []
    note = (
        f"A's faces hold about {detail:.0f} px ({crop}), enough for a {side} px model, but on a CPU "
        f"the model is {CPU_AUTO_SIDE} px: {side} px trains about 3x fewer faces a second; give "
        f"--resolution {side} for a long run"
    )
    return CPU_AUTO_SIDE, [note]


def resolution_warnings(name: str, fs: Faceset, crop: CropType, resolution: int) -> list[str]:
    """What to tell the user when ``fs``'s faces hold too few pixels for a ``resolution`` px model."""
    detail = crop_detail(fs, crop)
    if detail.px * UPSCALE_ALLOWED >= resolution:
        return []
    if detail.stored < detail.source:
        need = math.ceil(fs.size * resolution / max(detail.stored, 1.0) / 32) * 32
        return [
            f"faceset {name} ({fs.root}) stores {crop} crops of about {detail.stored:.0f} px, fewer than "
            f"the model's {resolution}: the swap will be soft; extract again with --size {need}"
        ]
    return [
        f"faceset {name} ({fs.root}): its faces are about {detail.source:.0f} px ({crop}) in the "
        f"footage, fewer than the model's {resolution}: the model learns upscaled faces"
    ]
