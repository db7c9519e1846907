"""Quality metrics shared by tests, training, convert, eval and benchmarks.

Pure numpy / OpenCV; torch is imported only inside :func:`ssim_torch`. Every function validates
its inputs and raises ValueError with the offending shape. Conventions:

- images are :math:`(H, W)` or :math:`(H, W, C)`, either uint8 (range 0..255) or floating point
  in [0, 1]; both images of a pair have the same shape and kind;
- masks are :math:`(H, W)` weights in [0, 1] (bool allowed); a masked metric is the
  mask-weighted mean over pixels;
- embeddings are :math:`(D,)` or :math:`(N, D)`; landmarks are the common 68-point set
  :math:`(68, 2)` or :math:`(N, 68, 2)` in pixels; poses are (yaw, pitch, roll) in degrees.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)


# ------------------------------------------------------------------------------------ helpers


def _as_image_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Both images as float64 :math:`(H, W, C)` and their data range (255 or 1)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and not 1 <= a.shape[2] <= 4):
        raise ValueError(f"images must be HxW or HxWxC (C<=4), got {a.shape}")
    kinds = {_kind(a), _kind(b)}
    if len(kinds) != 1:
        raise ValueError(f"images differ in kind: {a.dtype} vs {b.dtype} (both uint8 or both float)")
    data_range = 255.0 if kinds == {"uint8"} else 1.0
    if data_range == 1.0:
        for img in (a, b):
            lo, hi = float(np.min(img)), float(np.max(img))
            if lo < -0.01 or hi > 1.01:
                raise ValueError(f"float images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    if a64.ndim == 2:
        a64, b64 = a64[..., None], b64[..., None]
    return a64, b64, data_range


def _kind(img: np.ndarray) -> str:
    if img.dtype == np.uint8:
        return "uint8"
    if np.issubdtype(img.dtype, np.floating):
        return "float"
    raise ValueError(f"images must be uint8 or float, got {img.dtype}")


def _as_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != shape:
        raise ValueError(f"mask must be HxW {shape}, got {m.shape}")
    m = m.astype(np.float64)
    if m.size and (float(m.min()) < 0.0 or float(m.max()) > 1.0):
        raise ValueError("mask weights must be in [0, 1]")
    return m


def _weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is None:
        return float(values.mean())
    total = float(weights.sum())
    if total <= 0.0:
        raise ValueError("mask is empty (all weights zero)")
    return float((values * weights).sum() / total)


# --------------------------------------------------------------------------------------- SSIM


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""Per-pixel SSIM (Wang et al. 2004) over the valid region, averaged over channels.

    Gaussian window 11x11, :math:`\sigma = 1.5`, :math:`K_1 = 0.01`, :math:`K_2 = 0.03`, data
    range 255 for uint8 and 1 for float input. Only windows fully inside the image count, as in
    the reference implementation, so the map is 10 pixels smaller in each dimension.

    Args:
        a: image :math:`(H, W)` or :math:`(H, W, C)`, uint8 or float in [0, 1].
        b: image of the same shape and kind.

    Returns:
        SSIM map :math:`(H - 10, W - 10)`, float64, values in [-1, 1].
    """
    x, y, data_range = _as_image_pair(a, b)
    h, w = x.shape[:2]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} for SSIM, got {h}x{w}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ksize = (SSIM_WINDOW, SSIM_WINDOW)

    def blur(img: np.ndarray) -> np.ndarray:
        out = cv2.GaussianBlur(img, ksize, SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)
        return out[..., None] if out.ndim == 2 else out

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    pad = SSIM_WINDOW // 2
    smap = (num / den).mean(axis=2)
    return np.asarray(smap[pad : h - pad, pad : w - pad])


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    r"""Structural similarity of two images, optionally inside a mask.

    See :func:`ssim_map` for the window and constants. With a mask, the result is the
    mask-weighted mean of the SSIM map (the mask cropped to the map's valid region), so changes
    outside the mask (beyond the 5-pixel reach of the window) do not count.

    Args:
        a: image :math:`(H, W)` or :math:`(H, W, C)`, uint8 or float in [0, 1].
        b: image of the same shape and kind.
        mask: optional weights :math:`(H, W)` in [0, 1].

    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    smap = ssim_map(a, b)
    if mask is None:
        return float(smap.mean())
    h, w = np.asarray(a).shape[:2]
    pad = SSIM_WINDOW // 2
    m = _as_mask(mask, (h, w))[pad : h - pad, pad : w - pad]
    return _weighted_mean(smap, m)


def _gauss_kernel_1d() -> np.ndarray:
    k = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, ktype=cv2.CV_64F)
    return np.asarray(k[:, 0])


@functools.cache
def _gauss_band(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The "valid" 1-D Gaussian filter as a matrix :math:`(n - 10, n)`: row i holds the kernel at i."""
    import torch

    g = torch.as_tensor(_gauss_kernel_1d(), dtype=dtype, device=device)
    band = torch.zeros(n - SSIM_WINDOW + 1, n, dtype=dtype, device=device)
    for i in range(n - SSIM_WINDOW + 1):
        band[i, i : i + SSIM_WINDOW] = g
    return band


def _gauss_blur_valid(t: torch.Tensor) -> torch.Tensor:
    """Separable 11 px Gaussian blur without padding. Shapes: (..., H, W) -> (..., H-10, W-10).

    Two dense matrix products with banded matrices: on a CPU they run 2-4x faster (forward and
    backward) than the two depthwise convolutions they replace, despite the zeros they multiply.
    Autocast is held off: variances are differences of blurred squares, which bfloat16 ruins.
    """
    import torch

    h, w = t.shape[-2:]
    with torch.autocast(t.device.type, enabled=False):
        along_w = t.reshape(-1, w) @ _gauss_band(w, t.dtype, t.device).t()  # (..., H, W-10)
        along_w = along_w.view(-1, h, w - SSIM_WINDOW + 1)
        out = torch.matmul(_gauss_band(h, t.dtype, t.device), along_w)  # (N, H-10, W-10)
    return out.view(*t.shape[:-2], h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1)


def ssim_torch(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    data_range: float = 1.0,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    r"""Differentiable SSIM for training losses, matching :func:`ssim` (valid windows, same constants).

    Args:
        a: images :math:`(B, C, H, W)`, float in [0, ``data_range``].
        b: images of the same shape.
        mask: optional weights :math:`(B, 1, H, W)` or :math:`(B, H, W)` in [0, 1].
        data_range: value range of the images (1 for [0, 1]).
        reduction: ``"mean"`` gives a scalar over the batch (mask-weighted over all pixels),
            ``"none"`` one value per image :math:`(B,)`.

    Returns:
        SSIM tensor, scalar or :math:`(B,)`; use ``1 - ssim_torch(pred, target)`` as a loss.
    """
    import torch

    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"a and b must both be (B, C, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    bsz, _, h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} for SSIM, got {h}x{w}")
    dtype = a.dtype if a.is_floating_point() else torch.float32
    x = a.to(dtype)
    y = b.to(dtype)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    # Local statistics, each (B, C, H-10, W-10).
    mu_x, mu_y, xx, yy, xy = (_gauss_blur_valid(t) for t in (x, y, x * x, y * y, x * y))
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    smap = smap.mean(dim=1)  # (B, H-10, W-10)
    if mask is None:
        per_image = smap.flatten(1).mean(dim=1)
        return per_image.mean() if reduction == "mean" else per_image
    m = mask[:, 0] if mask.dim() == 4 else mask
    if m.shape != (bsz, h, w):
        raise ValueError(
            f"mask must be (B, 1, H, W) or (B, H, W) matching {(bsz, h, w)}, got {tuple(mask.shape)}"
        )
    pad = SSIM_WINDOW // 2
    m = m[:, pad : h - pad, pad : w - pad].to(dtype)
    if reduction == "mean":
        return (smap * m).sum() / m.sum().clamp_min(1e-8)
    return (smap * m).flatten(1).sum(dim=1) / m.flatten(1).sum(dim=1).clamp_min(1e-8)


# --------------------------------------------------------------------------------------- PSNR


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, max_val: float | None = None) -> float:
    r"""Peak signal-to-noise ratio in dB, optionally over a mask.

    Args:
        a: image :math:`(H, W)` or :math:`(H, W, C)`, uint8 or float in [0, 1].
        b: image of the same shape and kind.
        mask: optional weights :math:`(H, W)` in [0, 1]; the MSE is mask-weighted over pixels
            (and averaged over channels).
        max_val: peak value; default 255 for uint8, 1 for float.

    Returns:
        :math:`10 \log_{10}(\text{max\_val}^2 / \text{MSE})`; ``inf`` for identical images.
    """
    x, y, data_range = _as_image_pair(a, b)
    peak = data_range if max_val is None else float(max_val)
    if peak <= 0:
        raise ValueError(f"max_val must be positive, got {max_val}")
    sq = ((x - y) ** 2).mean(axis=2)
    m = None if mask is None else _as_mask(mask, x.shape[:2])
    mse = _weighted_mean(sq, m)
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))


# --------------------------------------------------------------------------------- embeddings


def _as_embeddings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    for name, v in (("a", x), ("b", y)):
        if v.ndim not in (1, 2) or v.shape[-1] == 0:
            raise ValueError(f"embedding {name} must be (D,) or (N, D), got {v.shape}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"embedding sizes differ: {x.shape} vs {y.shape}")
    if x.ndim == 2 and y.ndim == 2 and x.shape[0] != y.shape[0]:
        raise ValueError(f"embedding batches differ: {x.shape} vs {y.shape}")
    return x, y


SAME_PERSON_DISTANCE = 0.6
"""dlib's rule: embeddings nearer than this are the same person. Mean embeddings of one person's
clips lie far nearer (0.12-0.15 apart on GRID s1 and s4), different people's 0.75-0.91."""


def embedding_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between face embeddings.

    Args:
        a: :math:`(D,)` or :math:`(N, D)`.
        b: :math:`(D,)` or :math:`(N, D)`; a single vector is compared with every row.

    Returns:
        Distances :math:`(N,)`, or a 0-d array for two vectors (``float()`` it).
    """
    x, y = _as_embeddings(a, b)
    return np.asarray(np.linalg.norm(x - y, axis=-1))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity between face embeddings (0 where a vector is all zeros).

    Args:
        a: :math:`(D,)` or :math:`(N, D)`.
        b: :math:`(D,)` or :math:`(N, D)`; a single vector is compared with every row.

    Returns:
        Similarities in [-1, 1], :math:`(N,)` or a 0-d array for two vectors.
    """
    x, y = _as_embeddings(a, b)
    nx = np.linalg.norm(x, axis=-1)
    ny = np.linalg.norm(y, axis=-1)
    dot = (x * y).sum(axis=-1)
    return np.asarray(np.clip(dot / np.maximum(nx * ny, 1e-12), -1.0, 1.0))


def id_retrieval(
    swaps: np.ndarray,
    target_mean: np.ndarray,
    other_mean: np.ndarray,
    metric: Literal["euclidean", "cosine"] = "euclidean",
) -> float:
    """Share of swapped faces whose embedding is closer to the wanted person than to the other.

    Args:
        swaps: embeddings of the swapped faces :math:`(N, D)`.
        target_mean: mean embedding of the wanted identity :math:`(D,)` (B for a ``--to b`` swap).
        other_mean: mean embedding of the identity being replaced :math:`(D,)`.
        metric: ``"euclidean"`` (dlib / face_recognition embeddings) or ``"cosine"`` (ArcFace-like).

    Returns:
        Fraction in [0, 1]; ties count as not closer.
    """
    s = np.asarray(swaps, dtype=np.float64)
    t = np.asarray(target_mean, dtype=np.float64)
    o = np.asarray(other_mean, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"swaps must be (N, D) with N >= 1, got {s.shape}")
    if t.shape != (s.shape[1],) or o.shape != (s.shape[1],):
        raise ValueError(f"target_mean and other_mean must be ({s.shape[1]},), got {t.shape} and {o.shape}")
    if metric == "euclidean":
        closer = embedding_distance(s, t) < embedding_distance(s, o)
    elif metric == "cosine":
        closer = cosine_similarity(s, t) > cosine_similarity(s, o)
    else:
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    return float(np.mean(closer))


# ------------------------------------------------------------------------------ landmarks, pose


def interocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the eye centres (means of points 36-41 and 42-47) of 68-point landmarks.

    Args:
        landmarks: :math:`(68, 2)` or :math:`(N, 68, 2)`.

    Returns:
        :math:`(N,)` or a 0-d array.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape[-2:] != (68, 2) or lm.ndim not in (2, 3):
        raise ValueError(f"landmarks must be (68, 2) or (N, 68, 2), got {lm.shape}")
    left = lm[..., _LEFT_EYE, :].mean(axis=-2)
    right = lm[..., _RIGHT_EYE, :].mean(axis=-2)
    return np.asarray(np.linalg.norm(left - right, axis=-1))


def landmark_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean point-to-point distance, in units of the reference's interocular distance (NME).

    Args:
        pred: landmarks :math:`(68, 2)` or :math:`(N, 68, 2)`, pixels.
        ref: reference landmarks of the same shape; each face is normalised by its own
            reference eye-centre distance.

    Returns:
        Mean normalised error over all points and faces; 0 for identical landmarks, 0.1 for
        every point off by a tenth of the eye distance.
    """
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref differ in shape: {p.shape} vs {r.shape}")
    iod = interocular_distance(r)
    if np.any(iod < 1e-6):
        raise ValueError("reference landmarks have zero interocular distance")
    dist = np.linalg.norm(p - r, axis=-1).mean(axis=-1)  # (N,) or ()
    return float(np.mean(dist / iod))


def angle_differences(pose_a: np.ndarray, pose_b: np.ndarray, signed: bool = False) -> np.ndarray:
    """Absolute differences of head angles in degrees, wrapped to [0, 180]; ``signed``: ``a - b``
    wrapped to [-180, 180).

    Args:
        pose_a: (yaw, pitch, roll) in degrees, :math:`(3,)` or :math:`(N, 3)`.
        pose_b: the same shape.

    Returns:
        The same shape: each face's yaw, pitch and roll difference.
    """
    a = np.asarray(pose_a, dtype=np.float64)
    b = np.asarray(pose_b, dtype=np.float64)
    if a.shape != b.shape or a.shape[-1:] != (3,) or a.ndim not in (1, 2):
        raise ValueError(f"poses must both be (3,) or (N, 3), got {a.shape} and {b.shape}")
    diff: np.ndarray = (a - b + 180.0) % 360.0 - 180.0
    return diff if signed else np.abs(diff)


# ------------------------------------------------------------------------------------- flicker


def _mask_stream(mask: np.ndarray | Iterable[np.ndarray] | None) -> Iterator[np.ndarray | None]:
    if mask is None:
        while True:
            yield None
    arr = mask if isinstance(mask, np.ndarray) else None
    if arr is not None and arr.ndim == 2:
        while True:
            yield arr
    yield from (arr if arr is not None else mask)


def flicker(frames: Iterable[np.ndarray], mask: np.ndarray | Iterable[np.ndarray] | None = None) -> float:
    """Mean absolute frame-to-frame change, on the 0..255 scale, inside a mask.

    Includes real motion: compare a swap with its source through :func:`flicker_ratio`.

    Args:
        frames: at least two frames :math:`(H, W, C)` or :math:`(H, W)`, uint8 (or float in
            [0, 1], scaled by 255), all the same shape.
        mask: None (whole frame), one :math:`(H, W)` mask for all frames, or one mask per frame
            (:math:`(T, H, W)` array or an iterable); a frame pair is weighted by the union
            (maximum) of its two masks.

    Returns:
        Mask-weighted mean of :math:`|f_t - f_{t-1}|` over pixels, channels and pairs.
    """
    total = 0.0
    weight = 0.0
    prev: np.ndarray | None = None
    prev_mask: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    masks = _mask_stream(mask)
    count = 0
    for frame in frames:
        f = np.asarray(frame)
        if shape is None:
            shape = f.shape
            if f.ndim not in (2, 3):
                raise ValueError(f"frames must be HxW or HxWxC, got {f.shape}")
        elif f.shape != shape:
            raise ValueError(f"frame {count} has shape {f.shape}, first frame {shape}")
        cur = f.astype(np.float32) * (255.0 if _kind(f) == "float" else 1.0)
        if cur.ndim == 2:
            cur = cur[..., None]
        try:
            m_raw = next(masks)
        except StopIteration:
            raise ValueError(f"fewer masks than frames (no mask for frame {count})") from None
        m = None if m_raw is None else _as_mask(m_raw, f.shape[:2])
        if prev is not None:
            diff = np.abs(cur - prev).mean(axis=2)
            if m is None:
                total += float(diff.sum())
                weight += float(diff.size)
            else:
                pair = m if prev_mask is None else np.maximum(m, prev_mask)
                total += float((diff * pair).sum())
                weight += float(pair.sum())
        prev, prev_mask = cur, m
        count += 1
    if count < 2:
        raise ValueError(f"flicker needs at least two frames, got {count}")
    if weight <= 0.0:
        raise ValueError("mask is empty (all weights zero)")
    return total / weight


def flicker_ratio(
    swapped: Iterable[np.ndarray],
    source: Iterable[np.ndarray],
    mask: np.ndarray | Iterable[np.ndarray] | None = None,
) -> float:
    """Flicker of a swapped clip relative to its source: 1 adds no instability, > 1 adds some.

    Args:
        swapped: frames of the output, as for :func:`flicker`.
        source: the corresponding source frames, same shapes.
        mask: as for :func:`flicker`; a one-shot iterable of masks is materialised and used for both.

    Returns:
        ``flicker(swapped) / flicker(source)``; 1 when both are 0, ``inf`` when only the source is 0.
    """
    if mask is not None and not isinstance(mask, np.ndarray):
        mask = np.stack([np.asarray(m) for m in mask])
    f_swap = flicker(swapped, mask)
    f_src = flicker(source, mask)
    if f_src == 0.0:
        return 1.0 if f_swap == 0.0 else float("inf")
    return f_swap / f_src
