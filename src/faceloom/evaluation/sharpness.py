"""Facial detail, measured so that blur scores low and neither codec noise nor a pixel grid scores high.

:func:`detail_energy` is the RMS, inside a face mask, of the luma band-passed between a 3x3
binomial blur and a Gaussian of sigma 1.5 pixels: the band of pores, lashes, lip lines and the
edges of the eyes at the face's own resolution. The binomial kernel [1, 2, 1] / 4 passes exactly
nothing at the Nyquist frequency, so a pattern of 2-pixel period (the grid pixel-shuffle upsampling
leaves, a checkerboard, every other row) adds exactly nothing; the variance of the Laplacian, the
usual blur measure, counts such a grid fully.
:func:`sharpness_ratio` compares a made face with a real one at the same size: 1.0 is as detailed.
:func:`grid_energy` measures what the band leaves out on purpose: the energy at the Nyquist
frequency, where a pixel-shuffle grid lives and natural images hold little.
:func:`detail_kept` tells a swap's own detail from the replaced face's showing through: a mask
with holes at the eyes keeps the old, sharp eyes, and the ratio alone would count them.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceloom.checks import check_shape

BINOMIAL = np.array([1.0, 2.0, 1.0], np.float32) / 4
"""The band's inner low-pass (zero response at the Nyquist frequency)."""
OUTER_SIGMA = 1.5
"""The band's outer Gaussian, pixels at the resolution measured."""


def _luma(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32)
    if x.ndim == 3:
        x = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    return x


def detail_band(img: np.ndarray) -> np.ndarray:
    """(H, W) float32: the luma of ``img`` ((H, W, 3) RGB or (H, W), 0..255) band-passed between
    :data:`BINOMIAL` and a Gaussian of :data:`OUTER_SIGMA`."""
    y = _luma(img)
    fine = cv2.sepFilter2D(y, -1, BINOMIAL, BINOMIAL, borderType=cv2.BORDER_REFLECT)
    coarse = cv2.GaussianBlur(y, (0, 0), OUTER_SIGMA, borderType=cv2.BORDER_REFLECT)
    return np.asarray(fine - coarse, dtype=np.float32)


def _masked_rms(band: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None:
        return float(np.sqrt(np.mean(band**2)))
    w = mask.astype(np.float32)
    total = float(w.sum())
    if total <= 0:
        raise ValueError("mask is empty")
    return float(np.sqrt((band**2 * w).sum() / total))


def detail_energy(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS of :func:`detail_band` inside ``mask`` ((H, W) weights in 0..1; None: the whole image).

    Args:
        img: (H, W, 3) uint8 RGB or (H, W) grey.
    """
    check_shape(img, "H W 3" if img.ndim == 3 else "H W", "img")
    if mask is not None:
        check_shape(mask, "H W", "mask", H=img.shape[0], W=img.shape[1])
    return _masked_rms(detail_band(img), mask)


def sharpness_ratio(made: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> float:
    """:func:`detail_energy` of ``made`` over that of ``real`` (same size, same mask)."""
    if made.shape[:2] != real.shape[:2]:
        raise ValueError(f"made {made.shape[:2]} and real {real.shape[:2]} differ in size")
    reference = detail_energy(real, mask)
    return detail_energy(made, mask) / reference if reference > 0 else float("nan")


def detail_pair(made: np.ndarray, real: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """:func:`detail_energy` of ``made`` and of ``real`` and :func:`detail_kept`, each band computed once."""
    check_shape(mask, "H W", "mask", H=real.shape[0], W=real.shape[1])
    b_made, b_real = detail_band(made), detail_band(real)
    w = mask.astype(np.float32)
    energy = float((w * b_real * b_real).sum())
    kept = float((w * b_made * b_real).sum()) / energy if energy > 0 else float("nan")
    return _masked_rms(b_made, mask), _masked_rms(b_real, mask), kept


def detail_kept(made: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """The share of ``real``'s detail band that ``made`` still holds, inside ``mask``: the
    least-squares gain of ``real``'s band in ``made``'s (1 = all of it, 0 = none: a new face).

    Args:
        made, real: (H, W, 3) uint8 RGB of one size; mask: (H, W) weights in 0..1.
    """
    return detail_pair(made, real, mask)[2]


NYQUIST = np.array([1.0, -2.0, 1.0], np.float32) / 4
"""[1, -2, 1] / 4 passes the Nyquist frequency whole and nothing at zero frequency."""


def grid_energy(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS, inside ``mask``, of the luma's 2-pixel-period components: the checkerboard, the row and
    the column patterns (each filtered out by :data:`BINOMIAL` the other way), summed in energy."""
    y = _luma(img)
    parts = (
        cv2.sepFilter2D(y, -1, NYQUIST, NYQUIST, borderType=cv2.BORDER_REFLECT),
        cv2.sepFilter2D(y, -1, NYQUIST, BINOMIAL, borderType=cv2.BORDER_REFLECT),
        cv2.sepFilter2D(y, -1, BINOMIAL, NYQUIST, borderType=cv2.BORDER_REFLECT),
    )
    energy = sum(p**2 for p in parts)
    w = np.ones(y.shape, np.float32) if mask is None else mask.astype(np.float32)
    return float(np.sqrt((energy * w).sum() / w.sum()))


def laplacian_variance(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The usual blur measure, for comparison: the variance of the Laplacian inside ``mask``."""
    lap = cv2.Laplacian(_luma(img), cv2.CV_32F, ksize=1)
    w = np.ones(lap.shape, np.float32) if mask is None else mask.astype(np.float32)
    mean = float((lap * w).sum() / w.sum())
    return float(((lap - mean) ** 2 * w).sum() / w.sum())
