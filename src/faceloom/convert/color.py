"""Colour transfer: make the swapped face take the colour of the face it replaces.

All methods estimate a mapping from statistics of the ``face`` (the model output) and of the
``reference`` (the original face in the same aligned crop), both measured over the same masked
pixels, then apply the mapping to every pixel of ``face``. The caller's blend mask decides which
of them reach the frame.

- ``rct``: Reinhard et al. 2001, mean / standard deviation per channel in Lab.
- ``lct``: linear colour transfer in RGB. The affine map ``x -> A (x - mu_f) + mu_r`` with
  ``A C_f A^T = C_r``; of all such maps the Monge-Kantorovich one (Pitie and Kokaram 2007) is
  used, which moves colours the least: ``A = C_f^-1/2 (C_f^1/2 C_r C_f^1/2)^1/2 C_f^-1/2``.
- ``hist``: per-channel histogram matching (CDF mapping) over the masked pixels.

Every method moves colour and lighting only: the face's finest detail (what a Gaussian of
:data:`DETAIL_SIGMA_SHARE` of the side takes away) is kept as the model made it. A mapping fitted
to the replaced face's statistics also rescales contrast, and where the new face holds more contrast
than the old one (dark brows and stubble in place of a pale, evenly lit face) ``rct`` flattened the
model's detail with it: on GRID s4 a true-face swap with 0.98 of the wanted person's detail came out
of ``rct`` with 0.70 of it, as soft as a model without true face.
"""

from __future__ import annotations

from typing import get_args

import cv2
import numpy as np

from faceloom.checks import check_shape
from faceloom.config.choices import ColorChoice

ColorMethod = ColorChoice
"""Its choices are declared once, in :mod:`faceloom.config.choices`."""
COLOR_METHODS: tuple[ColorMethod, ...] = get_args(ColorMethod)

MIN_PIXELS = 16
"""Below this many pixels with mask > 0.5 the statistics are taken over the whole crop."""

_EPS = 1e-6

DETAIL_SIGMA_SHARE = 1 / 32
"""Sigma, as a share of the crop's side (4 px at 128), of the Gaussian below which :func:`match_color`
keeps the face's own detail."""


def _check(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None) -> None:
    check_shape(face, "R R 3", "face", dtype=np.uint8)
    if reference.shape != face.shape or reference.dtype != np.uint8:
        raise ValueError(f"reference must match face {face.shape} uint8, got {reference.shape}")
    if mask is not None and mask.shape != face.shape[:2]:
        raise ValueError(f"mask must be {face.shape[:2]}, got {mask.shape}")


STATS_SIDE = 128
"""Statistics are measured on a strided subsample of at most about this many pixels a side: plenty
for means, covariances and 256-bin histograms, and it keeps large crops fast."""


def _stats_view(img: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels the statistics use.

    Returns:
        :math:`(H', W', C)` strided subsample of ``img`` (contiguous) and a :math:`(H', W')` uint8
        mask of its pixels with ``mask > 0.5`` (None: all of them).
    """
    step = max(1, img.shape[0] // STATS_SIDE)
    sub = np.ascontiguousarray(img[::step, ::step])
    if mask is None:
        return sub, None
    sel = (np.asarray(mask)[::step, ::step] > 0.5).astype(np.uint8)
    if int(cv2.countNonZero(sel)) < MIN_PIXELS:
        return sub, None
    return sub, sel


def _mean_std(img: np.ndarray, sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    mean, std = cv2.meanStdDev(img, mask=sel)
    return mean.reshape(-1), std.reshape(-1)


def _float_rgb(img: np.ndarray) -> np.ndarray:
    return np.multiply(img, np.float32(1.0 / 255.0), dtype=np.float32)


def _rct(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None, max_scale: float) -> np.ndarray:
    work = _float_rgb(face)  # one float buffer, converted in place (fresh buffers cost page faults)
    cv2.cvtColor(work, cv2.COLOR_RGB2Lab, dst=work)
    f_sub, sel = _stats_view(work, mask)
    r_sub, _ = _stats_view(reference, None)
    r_lab = cv2.cvtColor(_float_rgb(r_sub), cv2.COLOR_RGB2Lab)
    mu_f, sd_f = _mean_std(f_sub, sel)
    mu_r, sd_r = _mean_std(r_lab, sel)
    gain = np.clip(sd_r / np.maximum(sd_f, _EPS), 1.0 / max_scale, max_scale)
    offset = mu_r - gain * mu_f
    m = np.hstack([np.diag(gain), offset[:, None]]).astype(np.float32)
    cv2.transform(work, m, dst=work)
    cv2.cvtColor(work, cv2.COLOR_Lab2RGB, dst=work)
    np.maximum(work, 0.0, out=work)  # out-of-gamut Lab can give small negatives
    return np.asarray(cv2.convertScaleAbs(work, alpha=255.0), dtype=np.uint8)


def _sqrtm(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric square root and inverse square root of a (3, 3) covariance."""
    w, v = np.linalg.eigh(c)
    s = np.sqrt(np.maximum(w, _EPS))
    return (v * s) @ v.T, (v / s) @ v.T


def _mean_cov(img: np.ndarray, sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    px = img.reshape(-1, 3) if sel is None else img.reshape(-1, 3)[sel.reshape(-1).astype(bool)]
    x = px.astype(np.float32)
    mu = x.mean(axis=0, dtype=np.float64)
    xc = x - mu.astype(np.float32)
    return mu, (xc.T @ xc).astype(np.float64) / max(1, len(x) - 1)


def _lct(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None, max_scale: float) -> np.ndarray:
    f_sub, sel = _stats_view(face, mask)
    r_sub, _ = _stats_view(reference, None)
    mu_f, c_f = _mean_cov(f_sub, sel)
    mu_r, c_r = _mean_cov(r_sub, sel)
    eye = np.eye(3)  # regulariser in grey levels^2: flat channels stay invertible
    f_half, f_inv_half = _sqrtm(c_f + eye)
    middle, _ = _sqrtm(f_half @ (c_r + eye) @ f_half)
    a = f_inv_half @ middle @ f_inv_half
    # Cap how far contrast may be stretched along any colour axis (a near-flat face would explode).
    top = float(np.max(np.abs(np.linalg.eigvalsh((a + a.T) / 2))))
    if top > max_scale:
        a = a * (max_scale / top)
    b = mu_r - a @ mu_f
    m = np.hstack([a, b[:, None]]).astype(np.float32)
    return np.asarray(cv2.transform(face, m), dtype=np.uint8)  # rounded and saturated


def _hist(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    f_sub, sel = _stats_view(face, mask)
    r_sub, _ = _stats_view(reference, None)
    levels = np.arange(256, dtype=np.float64)
    lut = np.empty((256, 3), dtype=np.uint8)
    for c in range(3):
        hf = cv2.calcHist([f_sub], [c], sel, [256], [0, 256]).reshape(-1).astype(np.float64)
        hr = cv2.calcHist([r_sub], [c], sel, [256], [0, 256]).reshape(-1).astype(np.float64)
        # Mid-point CDFs: a level maps to the reference level at the same quantile.
        cf = (np.cumsum(hf) - hf / 2) / hf.sum()
        cr = (np.cumsum(hr) - hr / 2) / hr.sum()
        present = hr > 0
        mapped = np.interp(cf, cr[present], levels[present])
        # Levels outside the masked range of the face (pixels outside the mask) keep their
        # distance to the range's ends instead of all collapsing onto them.
        seen = np.flatnonzero(hf)
        lo, hi = int(seen[0]), int(seen[-1])
        mapped[:lo] = levels[:lo] + (mapped[lo] - lo)
        mapped[hi + 1 :] = levels[hi + 1 :] + (mapped[hi] - hi)
        lut[:, c] = np.clip(np.rint(mapped), 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(face, lut.reshape(256, 1, 3)), dtype=np.uint8)


def match_color(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None,
    method: ColorMethod,
    *,
    max_scale: float = 3.0,
    keep_own_detail: bool = True,
) -> np.ndarray:
    """Transfer the colour of ``reference`` onto ``face``, keeping ``face``'s own fine detail.

    Args:
        face: :math:`(R, R, 3)` uint8 RGB, the image to recolour (the model output).
        reference: :math:`(R, R, 3)` uint8 RGB with the wanted colours (the original face crop).
        mask: :math:`(R, R)` float weights in :math:`[0, 1]`; statistics of both images are taken
            over the pixels with ``mask > 0.5`` (fewer than ``MIN_PIXELS``: the whole crop). None:
            the whole crop.
        method: ``none`` (returns ``face`` itself), ``rct``, ``lct`` or ``hist`` (see the module
            docstring).
        max_scale: the most ``rct`` / ``lct`` may stretch or shrink a channel's contrast, so a
            nearly flat face cannot blow up into noise.
        keep_own_detail: the transfer moves only what is coarser than :data:`DETAIL_SIGMA_SHARE`
            (:func:`keep_detail`); False: the transfer over the whole band, whose statistics are
            the reference's, fine detail included.

    Returns:
        :math:`(R, R, 3)` uint8 RGB, the recoloured face (every pixel is mapped, not only the
        masked ones).

    Example:
        >>> out = match_color(new_face, src_face, mask, "rct")
    """
    _check(face, reference, mask)
    if method == "none":
        return face
    if method == "rct":
        mapped = _rct(face, reference, mask, max_scale)
    elif method == "lct":
        mapped = _lct(face, reference, mask, max_scale)
    elif method == "hist":
        mapped = _hist(face, reference, mask)
    else:
        raise ValueError(f"unknown colour method {method!r}; expected one of {COLOR_METHODS}")
    return keep_detail(mapped, face) if keep_own_detail else mapped


def keep_detail(mapped: np.ndarray, face: np.ndarray) -> np.ndarray:
    """``mapped``'s colour and lighting with ``face``'s own fine detail: the Gaussian-blurred
    ``mapped`` plus the residue of ``face`` (both :math:`(R, R, 3)` uint8; sigma
    :data:`DETAIL_SIGMA_SHARE` of the side)."""
    sigma = DETAIL_SIGMA_SHARE * face.shape[0]
    f = face.astype(np.float32)
    low_mapped = np.asarray(
        cv2.GaussianBlur(mapped.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    )
    low_face = np.asarray(cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT))
    return np.asarray(cv2.convertScaleAbs(low_mapped + (f - low_face)), dtype=np.uint8)
