"""Putting a swapped face back into its frame: mask feathering, inverse warp and blending.

The converter has, per face, the (2, 3) frame -> crop ``matrix`` that cut the aligned crop out of
the frame. :func:`paste_face` warps the new face and its mask back with that same matrix (as an
inverse map) over just the part of the frame the mask can reach, and blends there; every other
pixel of the frame is left untouched, bit for bit.
"""

from __future__ import annotations

import math
from typing import get_args

import cv2
import numpy as np

from faceloom.checks import check_shape
from faceloom.config.choices import BlendChoice

BlendMethod = BlendChoice
"""Its choices are declared once, in :mod:`faceloom.config.choices`."""
BLEND_METHODS: tuple[BlendMethod, ...] = get_args(BlendMethod)

BORDER = 0.02
"""Band along the crop's edge, as a fraction of its side, where a softened mask is always 0: the
crop's edge never shows in the frame, even for a mask that fills the crop."""

SEAMLESS_SIDE = 160
"""Longest side, in pixels, of the box on which seamless cloning solves its colour field; larger
face boxes are solved downscaled (see ``_seamless``)."""

_PAD = 2
"""Pixels of replicated border around the box given to seamlessClone, which ignores the outer pixel
of its mask: a face cut by the frame edge is still cloned up to that edge."""


def _check_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    check_shape(m, "R R", "mask")
    return m


def soften_mask(mask: np.ndarray, erode: float = 0.0, blur: float = 0.1) -> np.ndarray:
    """Erode (or grow) a face mask and feather its edge inwards.

    The mask's shape is its 0.5 level set (``mask > 0.5``); inside it the mask's own soft values
    are kept and multiplied by the feather, so the result is never larger than the input (for
    ``erode >= 0``) and is exactly 0 wherever the input is <= 0.5 and within ``BORDER`` of the
    crop's edge. The feather is a Gaussian blur of the shape eroded by half the feather width,
    with sigma = width / 6, cut to the shape: it rises from 0 at the (eroded) edge to 1 at
    ``blur * R`` inside it, so nothing outside the mask ever shows.

    Args:
        mask: :math:`(R, R)` float mask in :math:`[0, 1]`.
        erode: how far to move the edge inwards, as a fraction of :math:`R`; negative grows the
            mask by that much (grown pixels get weight 1).
        blur: width of the feathered band, as a fraction of :math:`R` (0: hard edge).

    Returns:
        :math:`(R, R)` float32 mask in :math:`[0, 1]`.

    Example:
        >>> soft = soften_mask(hull_mask(points, 256), erode=0.02, blur=0.1)
    """
    m = np.clip(np.asarray(_check_mask(mask), dtype=np.float32), 0.0, 1.0)
    size = m.shape[0]
    band = max(1, math.ceil(BORDER * size))

    def zero_border(a: np.ndarray) -> None:
        a[:band] = 0
        a[-band:] = 0
        a[:, :band] = 0
        a[:, -band:] = 0

    zero_border(m)
    shift = erode * size
    width = max(0.0, blur * size)
    inside = (m > 0.5).astype(np.uint8)
    if shift < 0:
        outside_dist = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
        grown = outside_dist <= -shift
        m[grown] = 1.0
        zero_border(m)
        inside = (m > 0.5).astype(np.uint8)
        shift = 0.0
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 5)  # 0 outside, distance to the edge inside
    support = (dist > shift).astype(np.float32)
    if width <= 0:
        return np.asarray(m * support, dtype=np.float32)
    core = (dist > shift + width / 2).astype(np.float32)
    feather = cv2.GaussianBlur(core, (0, 0), sigmaX=width / 6, borderType=cv2.BORDER_CONSTANT)
    return np.asarray(np.clip(m * feather * support, 0.0, 1.0), dtype=np.float32)


def _frame_box(
    mask: np.ndarray, matrix: np.ndarray, frame_hw: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) frame box that the warped mask can reach, clipped to the frame; None if empty."""
    nz = (mask > 0).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(nz)
    if w == 0 or h == 0:
        return None
    # A frame pixel samples the crop bilinearly: it can be nonzero if it maps within 1 px of the
    # support's pixel centres.
    corners = np.array(
        [[x - 1, y - 1, 1], [x + w, y - 1, 1], [x - 1, y + h, 1], [x + w, y + h, 1]], dtype=np.float64
    )
    inverse = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    pts = corners @ inverse.T
    fh, fw = frame_hw
    x0 = max(0, math.floor(float(pts[:, 0].min())) - 1)
    y0 = max(0, math.floor(float(pts[:, 1].min())) - 1)
    x1 = min(fw, math.ceil(float(pts[:, 0].max())) + 2)
    y1 = min(fh, math.ceil(float(pts[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _alpha_blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``dst + (src - dst) * alpha`` rounded to uint8; exactly ``dst`` where alpha is 0."""
    base = dst.astype(np.float32)
    diff = src.astype(np.float32)
    diff -= base
    diff *= alpha[:, :, None]
    base += diff
    return np.asarray(cv2.convertScaleAbs(base), dtype=np.uint8)  # rounds; base is in [0, 255]


_INVERSE = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def _region(
    mask: np.ndarray, matrix: np.ndarray, frame_hw: tuple[int, ...]
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """The frame box (x0, y0, x1, y1) the warped (R, R) mask reaches, the box's frame -> crop
    affine and the mask warped into it; None when it reaches no frame pixel."""
    box = _frame_box(mask, matrix, (frame_hw[0], frame_hw[1]))
    if box is None:
        return None
    x0, y0, x1, y1 = box
    # Frame pixel (u + x0, v + y0) of the box maps to crop point M @ (u + x0, v + y0, 1).
    shifted = np.array(matrix, dtype=np.float64, copy=True)
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], dtype=np.float64)
    alpha = cv2.warpAffine(mask, shifted, (x1 - x0, y1 - y0), flags=_INVERSE, borderMode=cv2.BORDER_CONSTANT)
    return (box, shifted, np.asarray(alpha)) if np.any(alpha > 0) else None


def paste_face(
    frame: np.ndarray,
    face: np.ndarray,
    mask: np.ndarray,
    matrix: np.ndarray,
    method: BlendMethod = "alpha",
) -> np.ndarray:
    """Warp a face crop back into its frame and blend it in through a soft mask.

    Only the frame box the warped mask can reach (clipped to the frame) is warped and blended.

    Args:
        frame: :math:`(H, W, 3)` uint8 RGB frame; modified in place when writeable.
        face: :math:`(R, R, 3)` uint8 RGB face in the aligned crop.
        mask: :math:`(R, R)` float32 blend weights in :math:`[0, 1]` (e.g. from :func:`soften_mask`).
        matrix: :math:`(2, 3)` frame -> crop affine matrix the crop was cut with.
        method: ``alpha`` blends the warped face by the warped mask. ``seamless`` first runs
            Poisson cloning (``cv2.seamlessClone``, NORMAL_CLONE) with the binarised mask
            (``mask > 0``), which shifts the face's colours to meet the frame at the mask's edge,
            then alpha-blends that result with the soft mask so the edge stays soft.

    Returns:
        :math:`(H, W, 3)` uint8 frame (the same array as ``frame`` when it was writeable). Pixels
        where the warped mask is 0 are bit-identical to the input.
    """
    check_shape(frame, "H W 3", "frame", dtype=np.uint8)
    size = face.shape[0]
    if face.shape != (size, size, 3) or face.dtype != np.uint8:
        raise ValueError(f"face must be (R, R, 3) uint8, got {face.shape} {face.dtype}")
    m = np.asarray(_check_mask(mask), dtype=np.float32)
    if m.shape != (size, size):
        raise ValueError(f"mask {m.shape} does not match face {face.shape[:2]}")
    if method not in BLEND_METHODS:
        raise ValueError(f"unknown blend method {method!r}; expected one of {BLEND_METHODS}")
    region = _region(m, matrix, frame.shape)
    if region is None:
        return frame
    (x0, y0, x1, y1), shifted, alpha = region
    if not frame.flags.writeable:
        frame = frame.copy()
    warped = cv2.warpAffine(
        face, shifted, (x1 - x0, y1 - y0), flags=_INVERSE, borderMode=cv2.BORDER_REPLICATE
    )
    roi = frame[y0:y1, x0:x1]
    if method == "seamless":
        warped = _seamless(warped, roi, alpha)
    frame[y0:y1, x0:x1] = _alpha_blend(roi, warped, np.minimum(alpha, 1.0))
    return frame


FRAME_DETAIL_SIGMA = 0.5
"""The Gaussian whose residue :func:`add_frame_detail` takes, in the crop's pixels: the frame's
detail finer than about half a pixel of the model's crop, the band a model of that size cannot
make. Wider (0.7, 1.0) scored sharper on GRID s4 but moved the swaps' identity towards the
replaced person (README, Convert)."""


def add_frame_detail(
    frame: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    matrix: np.ndarray,
    amount: float,
    *,
    sigma: float = FRAME_DETAIL_SIGMA,
) -> np.ndarray:
    """Give a pasted face the source frame's own fine detail (luma finer than ``sigma`` crop pixels).

    A model of R pixels paints a face that spans more frame pixels than R with nothing finer than
    its own pixels; the frame it replaces has that band (pores, lashes, the fine edges of lips and
    lids, and the codec's texture). The band of ``source - frame`` is added, so the face's band
    becomes the source's where ``amount`` is 1, not the sum of both.

    Args:
        frame: :math:`(H, W, 3)` uint8 RGB frame the new face was pasted into; modified in place.
        source: :math:`(H, W, 3)` uint8 the same frame before the paste.
        mask, matrix: the :math:`(R, R)` blend mask and :math:`(2, 3)` frame -> crop affine of the paste.
        amount: 0 adds nothing, 1 all of the band.

    Returns:
        :math:`(H, W, 3)` uint8 frame (the same array as ``frame`` when it was writeable).
    """
    check_shape(source, "H W 3", "source", dtype=np.uint8)
    m = np.asarray(_check_mask(mask), dtype=np.float32)
    region = _region(m, matrix, frame.shape) if amount > 0 else None
    if region is None:
        return frame
    (x0, y0, x1, y1), _, alpha = region
    if not frame.flags.writeable:
        frame = frame.copy()
    crop_px_per_frame_px = math.sqrt(abs(float(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))
    pad = math.ceil(4 * sigma / max(crop_px_per_frame_px, 1e-6))
    px0, py0 = max(0, x0 - pad), max(0, y0 - pad)
    px1, py1 = min(frame.shape[1], x1 + pad), min(frame.shape[0], y1 + pad)
    # The band of (source - pasted): the frame's fine detail in place of the new face's, so a face
    # that already has it (a model as sharp as the frame) gets nothing on top.
    gray = [cv2.cvtColor(x[py0:py1, px0:px1], cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (source, frame)]
    lost = gray[0] - gray[1]
    fine = lost - cv2.GaussianBlur(lost, (0, 0), sigma / max(crop_px_per_frame_px, 1e-6))
    fine = fine[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
    roi = frame[y0:y1, x0:x1].astype(np.float32) + (amount * np.minimum(alpha, 1.0) * fine)[..., None]
    frame[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    return frame


def _seamless(src: np.ndarray, dst: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Poisson-clone ``src`` into ``dst`` (same-size boxes) over ``alpha > 0``; (h, w, 3) uint8.

    NORMAL_CLONE keeps the face's gradients, so the clone is ``src + f`` with ``f`` harmonic
    inside the mask and equal to ``dst - src`` on its edge: a smooth field. For boxes larger than
    ``SEAMLESS_SIDE`` the field is solved on a downscaled copy and upsampled, which costs a
    fraction of the full-size solve and keeps the face's own detail at full resolution.
    """
    h, w = alpha.shape
    scale = min(1.0, SEAMLESS_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        src_s = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        dst_s = cv2.resize(dst, size, interpolation=cv2.INTER_AREA)
        # INTER_AREA then "> 0": the small mask covers every small pixel any of the mask touches.
        alpha_s = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    else:
        src_s, dst_s, alpha_s = src, dst, alpha
    p = _PAD
    binary = cv2.copyMakeBorder(
        np.where(alpha_s > 0, 255, 0).astype(np.uint8), p, p, p, p, cv2.BORDER_REPLICATE
    )
    src_p = cv2.copyMakeBorder(src_s, p, p, p, p, cv2.BORDER_REPLICATE)
    dst_p = cv2.copyMakeBorder(dst_s, p, p, p, p, cv2.BORDER_REPLICATE)
    x, y, bw, bh = cv2.boundingRect(binary)
    # seamlessClone centres the mask's bounding box on `center` (integer halves): this puts it back
    # where it came from.
    center = (x + bw // 2, y + bh // 2)
    cloned = cv2.seamlessClone(src_p, dst_p, binary, center, cv2.NORMAL_CLONE)[p:-p, p:-p]
    if scale == 1.0:
        return np.asarray(cloned, dtype=np.uint8)
    small_field = cloned.astype(np.float32) - src_s.astype(np.float32)
    field = np.asarray(cv2.resize(small_field, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    field += src.astype(np.float32)
    np.clip(field, 0, 255, out=field)
    return np.asarray(cv2.convertScaleAbs(field), dtype=np.uint8)


def sharpen(face: np.ndarray, amount: float, *, sigma: float | None = None) -> np.ndarray:
    """Unsharp mask: ``face + amount * (face - gaussian(face))``.

    Args:
        face: :math:`(R, R, 3)` uint8 image.
        amount: strength; 0 returns ``face`` itself, 0.5-1 is a usual range.
        sigma: blur radius in pixels; default ``max(0.8, R / 128)`` (1 px at 128, 2 px at 256).

    Returns:
        :math:`(R, R, 3)` uint8 sharpened image.
    """
    if amount == 0:
        return face
    s = sigma if sigma is not None else max(0.8, face.shape[0] / 128)
    blurred = cv2.GaussianBlur(face, (0, 0), sigmaX=s)
    out = cv2.addWeighted(face, 1.0 + amount, blurred, -amount, 0.0)
    return np.asarray(out, dtype=np.uint8)
