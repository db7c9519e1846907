"""Per-face measures for coverage: head pose, expression from landmarks, light and colour of the face.

Geometry is measured on the landmarks in the stored (aligned) crop, so roll and face size drop out:

- ``mouth_open``: mean inner-lip gap (points 61-67, 62-66, 63-65) over the mouth width (48-54);
  about 0.02 closed, 0.1-0.3 speaking, 0.4+ wide open.
- ``eye_open``: eye aspect ratio (Soukupova and Cech 2016), the mean over both eyes of
  ``(|p1-p5| + |p2-p4|) / (2 |p0-p3|)``; about 0.3-0.35 open, below 0.15 closed.
- ``smile``: mouth width over the eye distance, relative to the median of the same set of faces
  (0 = that person's usual mouth, +0.1 = 10% wider), so people with wide mouths are not "smiling".
- ``brightness``: mean luma Y' (0-255, Rec. 601) inside the face hull; ``colour_rg`` /
  ``colour_bg``: log2 of the mean red / blue over the mean green there, a colour cast measure that
  does not change when the light only gets brighter or darker; from the face crop at 64 px.
- ``face_size``: side of the landmark box in source pixels; ``blur``: the faceset's sharpness score.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from faceloom.faces.align import derive_crop, subcrop_box, transform_points
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.landmarks import expression_measures
from faceloom.faces.masks import hull_mask

Attribute = Literal[
    "yaw",
    "pitch",
    "roll",
    "mouth_open",
    "eye_open",
    "smile",
    "brightness",
    "colour_rg",
    "colour_bg",
    "face_size",
    "blur",
]
ATTRIBUTES: tuple[Attribute, ...] = (
    "yaw",
    "pitch",
    "roll",
    "mouth_open",
    "eye_open",
    "smile",
    "brightness",
    "colour_rg",
    "colour_bg",
    "face_size",
    "blur",
)
STATS_SIZE = 64
"""Side in pixels of the face crop that brightness and colour are measured on."""
THUMB_SIZE = 32
"""Side in pixels of the grey face thumbnails compared for near-duplicates."""


@dataclass
class FaceTable:
    """Per-face measures of a set of faces (N rows, faceset row order).

    Attributes:
        ids, sources: (N,) face ids and source keys.
        frames: (N,) int64 frame indices; times: (N,) float64 seconds.
        values: attribute name -> (N,) float64, NaN where unknown (no image, no landmarks).
        thumbs: (N, THUMB_SIZE**2) float32 grey face thumbnails, or None when images were not read.
    """

    ids: list[str]
    sources: list[str]
    frames: np.ndarray
    times: np.ndarray
    values: dict[str, np.ndarray]
    thumbs: np.ndarray | None = None
    missing_images: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: np.ndarray) -> FaceTable:
        """Rows where the (N,) bool ``mask`` is true."""
        idx = np.flatnonzero(mask)
        kept = {self.ids[i] for i in idx}
        return FaceTable(
            ids=[self.ids[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            frames=self.frames[idx],
            times=self.times[idx],
            values={k: v[idx] for k, v in self.values.items()},
            thumbs=None if self.thumbs is None else self.thumbs[idx],
            missing_images=[i for i in self.missing_images if i in kept],
        )


def crop_points(record: FaceRecord) -> np.ndarray:
    """(68, 2) landmarks of a row in its stored crop's pixels."""
    return transform_points(record.landmarks_array, record.matrix_array)


@dataclass
class _ImageStats:
    brightness: float
    colour_rg: float
    colour_bg: float
    thumb: np.ndarray


def image_stats(stored_rgb: np.ndarray, points: np.ndarray, stored_crop: str) -> _ImageStats:
    """Light, colour and a thumbnail of one face.

    Args:
        stored_rgb: (S, S, 3) uint8 stored crop; points: (68, 2) landmarks in it.
        stored_crop: the crop type of the stored image (a faceset's ``crop``).
    """
    size = STATS_SIZE
    face = derive_crop(stored_rgb, "face", size, stored=stored_crop)  # type: ignore[arg-type]
    x0, y0, side = subcrop_box(stored_crop, stored_rgb.shape[0], "face")  # type: ignore[arg-type]
    pts = (np.asarray(points, dtype=np.float64) - [x0, y0]) * (size / side)
    mask = hull_mask(pts, size)
    if float(mask.sum()) < 1.0:
        mask = np.ones((size, size), dtype=np.float32)
    w = mask / float(mask.sum())
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
    r, g, b = (max(float((face[..., c].astype(np.float32) * w).sum()), 0.5) for c in range(3))
    thumb = cv2.resize(grey, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    return _ImageStats(
        brightness=float((grey * w).sum()),
        colour_rg=float(np.log2(r / g)),
        colour_bg=float(np.log2(b / g)),
        thumb=np.asarray(thumb, dtype=np.float32).ravel(),
    )


def _read_stats(fs: Faceset, record: FaceRecord) -> _ImageStats | None:
    img = cv2.imread(str(fs.image_path(record)), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return image_stats(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), crop_points(record), fs.crop)


def face_table(records: Sequence[FaceRecord], faceset: Faceset | None = None, workers: int = 4) -> FaceTable:
    """Measure every face; with ``faceset`` its crops are read for light, colour and thumbnails.

    Args:
        records: the faces (for example ``faceset.records``, or rows made up in a test).
        faceset: where the crops are; None measures geometry only (image columns are NaN).
        workers: threads reading images (OpenCV releases the GIL while decoding).
    """
    n = len(records)
    values: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in ATTRIBUTES}
    if n:
        pts = np.stack([crop_points(r) for r in records])
        expr = expression_measures(pts)
        values["mouth_open"] = expr["mouth_open"]
        values["eye_open"] = expr["eye_open"]
        values["smile"] = expr["mouth_width"] / float(np.median(expr["mouth_width"])) - 1.0
        for name in ("yaw", "pitch", "roll", "blur"):
            values[name] = np.array([float(getattr(r, name)) for r in records])
        values["face_size"] = np.array([r.face_size for r in records])
    thumbs: np.ndarray | None = None
    missing: list[str] = []
    if faceset is not None and n:
        fs = faceset
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            stats = list(pool.map(lambda r: _read_stats(fs, r), records))
        thumbs = np.full((n, THUMB_SIZE * THUMB_SIZE), np.nan, dtype=np.float32)
        for i, (r, s) in enumerate(zip(records, stats, strict=True)):
            if s is None:
                missing.append(r.id)
                continue
            values["brightness"][i] = s.brightness
            values["colour_rg"][i] = s.colour_rg
            values["colour_bg"][i] = s.colour_bg
            thumbs[i] = s.thumb
    return FaceTable(
        ids=[r.id for r in records],
        sources=[r.source for r in records],
        frames=np.array([r.frame for r in records], dtype=np.int64),
        times=np.array([r.time for r in records], dtype=np.float64),
        values=values,
        thumbs=thumbs,
        missing_images=missing,
    )
