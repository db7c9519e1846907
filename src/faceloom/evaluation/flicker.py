"""Flicker and sharpness of a converted video against its source, measured in the source's face
region."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from faceloom.errors import InputError
from faceloom.evaluation.sharpness import detail_pair
from faceloom.faces.masks import hull_mask
from faceloom.metrics import flicker
from faceloom.progress import ProgressFn, report


def face_regions(
    source: Path, detector_name: str = "mediapipe", progress: ProgressFn | None = None
) -> list[list[np.ndarray]]:
    """Landmarks (68, 2) of every face found in each frame of ``source`` (an empty list: none)."""
    from faceloom.faces.detect import create_detector
    from faceloom.media.reader import iter_video, probe_video

    total = probe_video(source).frames
    detector = create_detector(detector_name, 4)
    out: list[list[np.ndarray]] = []
    try:
        for frame in iter_video(source):
            out.append([f.landmarks for f in detector.detect(frame.rgb)])
            report(progress, "detect faces in source", len(out), total)
    finally:
        detector.close()
    return out


def region_mask(faces: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """(H, W) float32 union of the face hulls (forehead included) of a frame's faces."""
    side = max(height, width)
    mask = np.zeros((height, width), dtype=np.float32)
    for lm in faces:
        mask = np.maximum(mask, hull_mask(lm, side)[:height, :width])
    return mask


def _frames(path: Path, limit: int) -> Iterator[np.ndarray]:
    from faceloom.media.reader import iter_video

    return (f.rgb for f in itertools.islice(iter_video(path), limit))


def video_flicker(
    swapped: str | Path,
    source: str | Path,
    detector_name: str = "mediapipe",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Mean frame-to-frame change in the face region of a converted video and of its source.

    The region of frame t is the union of the face hulls detected in the *source* frame t, so both
    videos are measured on the same pixels; a pair of frames counts where either frame has a face
    (see :func:`faceloom.metrics.flicker`). Real motion moves both numbers; the ratio is what the
    swap adds (1 = as stable as the source).

    Sharpness is measured on the same pixels at the frame's own resolution: the median over frames
    with a face of :func:`~faceloom.evaluation.sharpness.detail_energy` of the swapped frame over the
    source frame's (1 = as much facial detail as the face it replaced). A blurred face is steady, so
    a low flicker ratio means little without it. ``detail_from_source`` is the median share of the
    source face's own detail still in the swapped frame (:func:`~faceloom.evaluation.sharpness.detail_kept`):
    for a swap of another person a high share is the old face showing through (s4_hq: a learned mask
    with holes at the eyes kept 0.64, swaps of the whole face 0.2-0.26); a reenactment of the same
    person on frames it trained on, as ``faceloom demo``, keeps more by right (0.56).

    Returns:
        ``swapped``, ``source``, ``frames`` (compared), ``face_frames`` (with a face in the source),
        ``flicker_swapped``, ``flicker_source`` (0-255 scale), ``flicker_ratio``,
        ``detail_swapped``, ``detail_source`` (medians), ``sharpness_ratio``, ``detail_from_source``
        and ``warnings``.
    """
    from faceloom.media.reader import probe_video

    swapped, source = Path(swapped), Path(source)
    for p in (swapped, source):
        if not p.exists():
            raise InputError("no such video", p)
    info_s, info_o = probe_video(swapped), probe_video(source)
    if (info_s.width, info_s.height) != (info_o.width, info_o.height):
        raise InputError(
            f"frame size {info_s.width}x{info_s.height} differs from the source's "
            f"{info_o.width}x{info_o.height}; flicker compares the same pixels of both",
            swapped,
        )
    regions = face_regions(source, detector_name, progress)
    n_swapped = sum(1 for _ in _frames(swapped, len(regions) + 1))
    warnings = []
    n = min(n_swapped, len(regions))
    if n_swapped != len(regions):
        warnings.append(
            f"the videos differ in length ({n_swapped} vs {len(regions)} frames); compared the first {n}"
        )
    if n < 2:
        raise InputError(f"flicker needs at least two frames, got {n}", swapped)
    regions = regions[:n]
    face_frames = sum(1 for r in regions if r)
    if face_frames == 0:
        raise InputError("no face found in any frame of the source video", source)
    h, w = info_o.height, info_o.width

    def masks() -> Iterator[np.ndarray]:
        return (region_mask(r, h, w) for r in regions)

    detail: list[tuple[float, float]] = []
    kept: list[float] = []

    def swapped_frames() -> Iterator[np.ndarray]:
        """The swapped frames for flicker; on the way, each one's detail against its source frame."""
        for made, real, faces in zip(_frames(swapped, n), _frames(source, n), regions, strict=True):
            if faces:
                mask = region_mask(faces, h, w)
                d_made, d_real, share = detail_pair(made, real, mask)
                detail.append((d_made, d_real))
                kept.append(share)
            yield made

    f_swap = flicker(swapped_frames(), masks())
    f_src = flicker(_frames(source, n), masks())
    d_swap, d_src = (float(np.median([d[k] for d in detail])) for k in (0, 1))
    sharp = float(np.median([a / b for a, b in detail if b > 0])) if d_src > 0 else None
    from_source = float(np.nanmedian(kept))
    if f_src == 0.0:
        ratio: float | None = 1.0 if f_swap == 0.0 else None
    else:
        ratio = f_swap / f_src
    return {
        "swapped": str(swapped),
        "source": str(source),
        "frames": n,
        "face_frames": face_frames,
        "flicker_swapped": round(f_swap, 4),
        "flicker_source": round(f_src, 4),
        "flicker_ratio": None if ratio is None else round(ratio, 4),
        "detail_swapped": round(d_swap, 3),
        "detail_source": round(d_src, 3),
        "sharpness_ratio": None if sharp is None else round(sharp, 4),
        "detail_from_source": round(from_source, 4),
        "warnings": warnings,
    }
