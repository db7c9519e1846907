"""Training samples: held-out splits, face loading, augmentation and a background batch prefetcher.

One :class:`FaceData` holds the faces of one person, loaded once into RAM as the model's crop type
(derived from the stored head crop) with a margin of context around it, plus their 68 landmarks in
the pixels of that loaded image. A training sample is drawn as in deepfakes/faceswap:

1. a random similarity transform (rotation, scale, shift) and a random horizontal flip map the loaded
   image onto the ``R x R`` model crop (the ``coverage`` share of the crop around its centre);
2. a random brightness / contrast change of the lightness and a small colour (chroma) shift;
3. the ``target`` is that image; the ``warped`` input is the same image pulled through a smooth random
   grid warp (5 x 5 control points), so the model must learn the face rather than copy pixels;
4. the landmarks follow the same transform (and the iBUG mirror permutation on a flip), giving the
   hull ``mask`` and the eye / mouth loss ``weights`` of the target.

Every random draw of a sample comes from ``np.random.default_rng([seed, step, i])`` (``i`` the
position in the batch), and the faces a step uses from the seed and step alone, so a resumed or
distributed run rebuilds exactly the same batches in any thread.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import cv2
import numpy as np

from faceloom.errors import InputError
from faceloom.faces import masks
from faceloom.faces.align import CROP_REGIONS, CropType, subcrop_box, transform_points
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.landmarks import LEFT_EYE, MOUTH, RIGHT_EYE, interocular
from faceloom.faces.masks import hull_mask

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

IBUG_MIRROR: np.ndarray = np.array(
    [
        *range(16, -1, -1),  # jaw 0-16
        *range(26, 16, -1),  # brows 17-26
        27, 28, 29, 30,  # nose bridge
        35, 34, 33, 32, 31,  # nose bottom
        45, 44, 43, 42, 47, 46,  # right eye <- left eye
        39, 38, 37, 36, 41, 40,  # left eye <- right eye
        54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip
        64, 63, 62, 61, 60, 67, 66, 65,  # inner lip
    ],
    dtype=np.int64,
)  # fmt: skip
"""iBUG 68-point mirror permutation: after flipping an image horizontally, ``points[IBUG_MIRROR]``
puts every point back under its own index (the subject's right eye stays at 36-41, and so on)."""

WARP_GRID = 5
"""Control points per side of the random grid warp (faceswap: 5)."""

WARP_SIGMA = 5.0 / 256.0
"""Standard deviation of the grid-warp offsets as a share of the crop side (faceswap: 5 px at 256)."""

MAX_MARGIN = 1.6
"""Largest load size as a multiple of the model resolution; beyond it borders are reflected."""

COLOR_BRIGHTNESS = 0.5
"""Lightness shift at ``color = 1`` as a share of the full 8-bit range."""

COLOR_CHROMA = 0.25
"""Cr/Cb shift at ``color = 1`` in units of 128 (the half range of 8-bit chroma)."""

YAW_BIN_DEG = 10.0
"""Width of the yaw bins that ``yaw_balance`` equalises."""

YAW_MAX_BOOST = 10.0
"""With ``yaw_balance`` no face is drawn more than about this many times as often as uniformly."""

_RGB_TO_YCC = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.713 * 0.701, -0.713 * 0.587, -0.713 * 0.114],
        [-0.564 * 0.299, -0.564 * 0.587, 0.564 * 0.886],
    ]
)
"""RGB to (Y, Cr - 128, Cb - 128), as OpenCV's YCrCb."""
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)

_NO_MAP = np.empty((0, 0), dtype=np.float32)
"""Empty second map for cv2.remap with one two-channel map."""

_TAG_EPOCH = 0x5EED1D5
_TAG_BALANCE = 0x5EED1D6
"""Middle words of the index generators' seeds, far from any real step, so they never meet the
per-sample seeds ``[seed, step, i]``."""


# ---- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training samples (all on by default, as in faceswap)."""

    rotation: float = 10.0
    """Degrees, uniform in ``[-rotation, rotation]``."""
    scale: float = 0.05
    """Zoom share, uniform in ``[1 - scale, 1 + scale]``."""
    shift: float = 0.05
    """Translation share of the crop side, uniform in ``[-shift, shift]`` per axis."""
    flip: bool = True
    """Random horizontal flip with probability 0.5 (landmarks follow, mirror-permuted)."""
    warp: bool = True
    """Random 5 x 5 grid warp of the input only (offsets ~ N(0, warp_strength * 5/256 of the side))."""
    warp_strength: float = 1.0
    """Scale of the grid-warp offsets; 1.0 is faceswap's (5 px at 256), 0 leaves the input unwarped."""
    color: float = 0.1
    """Colour jitter: lightness (luma) contrast ``1 +- color`` around the image mean and brightness
    ``+- color * 128``, chroma shift ``+- color * 32`` (8-bit YCrCb units). Affine in YCrCb, so it is
    one 3 x 4 colour matrix in RGB: ~20x cheaper than a round trip through OpenCV's Lab. 0 disables."""

    @property
    def warps(self) -> bool:
        """Whether the input is grid-warped at all."""
        return self.warp and self.warp_strength > 0

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "shift", "color", "warp_strength"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment {name} must be >= 0, got {getattr(self, name)}")
        if self.scale >= 1.0:
            raise ValueError(f"augment scale must be < 1, got {self.scale}")

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(rotation=0.0, scale=0.0, shift=0.0, flip=False, warp=False, color=0.0)

    def margin(self) -> float:
        """Load size as a multiple of the output size so the affine never samples outside it.

        A square of half side ``h`` rotated by ``a`` spans ``h (cos a + sin a)``; zooming out by
        ``1 - scale`` and shifting by ``shift`` of the side grow it further. Capped at
        :data:`MAX_MARGIN`; the grid warp's few pixels beyond are reflected.
        """
        a = math.radians(min(self.rotation, 45.0))
        m = (math.cos(a) + math.sin(a)) / (1.0 - self.scale) + 2.0 * self.shift
        return min(m, MAX_MARGIN)


DEFAULT_AUGMENT = AugmentConfig()


# ---- held-out split -----------------------------------------------------------------------------
@dataclass
class HoldOut:
    """Which faces train and which are kept back for evaluation.

    ``mode`` is ``"sources"`` (whole clips held out), ``"blocks"`` (the last contiguous block of
    frames of each source) or ``"none"``.
    """

    train_ids: list[str]
    holdout_ids: list[str]
    description: str
    mode: str = "none"

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "description": self.description,
            "train_ids": list(self.train_ids),
            "holdout_ids": list(self.holdout_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HoldOut:
        return cls(
            train_ids=[str(i) for i in data["train_ids"]],
            holdout_ids=[str(i) for i in data["holdout_ids"]],
            description=str(data.get("description", "")),
            mode=str(data.get("mode", "none")),
        )


_MAX_DP_CELLS = 20_000_000


def _pick_sources(counts: list[int], target: float, lo: int, hi: int) -> list[int] | None:
    """Indices of a set of sources whose total is closest to ``target`` within ``[lo, hi]``.

    Exact 0/1 knapsack over face counts (counts are bucketed for huge facesets); ties go to fewer
    sources, then to the smaller total. None when no subset lands in ``[lo, hi]``.
    """
    total = sum(counts)
    g = max(1, math.ceil(len(counts) * (total + 1) / _MAX_DP_CELLS))
    c = [max(1, round(x / g)) for x in counts]
    width = sum(c) + 1
    big = np.iinfo(np.int32).max // 2
    best = np.full(width, big, dtype=np.int32)  # fewest sources reaching each total
    best[0] = 0
    took = np.zeros((len(c), width), dtype=bool)
    for j, cj in enumerate(c):
        cand = np.full(width, big, dtype=np.int32)
        cand[cj:] = best[: width - cj] + 1
        took[j] = cand < best
        best = np.minimum(best, cand)
    # Score every reachable total by the real (unbucketed) face count it stands for (approximately).
    reachable = np.flatnonzero(best < big)
    feasible = [int(t) for t in reachable if lo <= t * g <= hi]
    if not feasible:
        return None
    t = min(feasible, key=lambda t: (abs(t * g - target), int(best[t]), t))
    picked: list[int] = []
    for j in range(len(c) - 1, -1, -1):
        if took[j, t]:
            picked.append(j)
            t -= c[j]
    return sorted(picked)


def split_holdout(fs: Faceset, share: float = 0.1, min_faces: int = 8) -> HoldOut:
    """Split a faceset into training faces and held-out faces for evaluation.

    Neighbouring video frames are near twins, so held-out faces are never scattered frames: with three
    or more sources whole sources are held out (the set whose faces come closest to ``share``; fewest
    sources on a tie), otherwise - or when no set of whole sources comes within twice the wanted
    number - the last contiguous block of about ``share`` of each source's frames. At least
    ``min_faces`` faces are held out and at least ``min_faces`` kept for training; a faceset smaller
    than ``2 * min_faces`` holds out nothing. The result depends only on the faceset's rows.

    Args:
        fs: the faceset (all its rows are split).
        share: wanted held-out share of the faces, in ``[0, 1)``.
        min_faces: smallest number of faces on either side.

    Returns:
        :class:`HoldOut` with ids in faceset row order and a one-line description.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"hold-out share must be in [0, 1), got {share}")
    records = fs.records
    n = len(records)
    all_ids = [r.id for r in records]
    if share == 0.0:
        return HoldOut(all_ids, [], "no faces held out (hold-out share 0)", "none")
    if n < 2 * min_faces:
        return HoldOut(
            all_ids,
            [],
            f"no faces held out: {n} faces is fewer than 2 x {min_faces} (too few to split)",
            "none",
        )
    by_source: dict[str, list[FaceRecord]] = {}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    keys = sorted(by_source)
    lo, hi = min_faces, n - min_faces
    target = min(max(share * n, float(min_faces)), float(hi))

    if len(keys) >= 3:
        picked = _pick_sources([len(by_source[k]) for k in keys], target, lo, hi)
        total = 0 if picked is None else sum(len(by_source[keys[j]]) for j in picked)
        if picked is not None and total <= 2.0 * target:
            held = {r.id for j in picked for r in by_source[keys[j]]}
            names = ", ".join(keys[j] for j in picked)
            desc = (
                f"held out {len(picked)} of {len(keys)} whole sources ({names}): "
                f"{total} of {n} faces ({100.0 * total / n:.1f}%)"
            )
            return _holdout(all_ids, held, desc, "sources")

    blocks = {k: sorted(by_source[k], key=lambda r: (r.frame, r.track, r.id)) for k in keys}
    wants = {k: min(round(target * len(rows) / n), len(rows) - 1) for k, rows in blocks.items()}
    while sum(wants.values()) > hi:  # rounding over many sources: shorten the longest block
        longest = max(keys, key=lambda k: (wants[k], k))
        wants[longest] -= 1
    held = {r.id for k, rows in blocks.items() if wants[k] > 0 for r in rows[-wants[k] :]}
    total = len(held)
    if total == 0:
        return HoldOut(all_ids, [], f"no faces held out: sources too short to split ({n} faces)", "none")
    desc = (
        f"held out the last ~{100.0 * share:.0f}% of frames of each of {len(keys)} source(s) as one "
        f"contiguous block: {total} of {n} faces ({100.0 * total / n:.1f}%)"
    )
    return _holdout(all_ids, held, desc, "blocks")


def _holdout(all_ids: list[str], held: set[str], description: str, mode: str) -> HoldOut:
    train = [i for i in all_ids if i not in held]
    holdout = [i for i in all_ids if i in held]
    return HoldOut(train, holdout, description, mode)


# ---- batches ------------------------------------------------------------------------------------
@dataclass
class Batch:
    """A batch of training samples, channels last, as numpy arrays.

    Attributes:
        warped: :math:`(B, R, R, 3)` float32 in ``[0, 1]``: augmented and grid-warped model input.
        target: :math:`(B, R, R, 3)` float32 in ``[0, 1]``: same affine / flip / colour, not warped.
        mask: :math:`(B, R, R, 1)` float32 in ``[0, 1]``: landmark hull mask of the target.
        weights: :math:`(B, R, R, 1)` float32 loss weights: 0 off the face, 1 on it, the eye / mouth
            weights on those regions.
        ids: the face id of each sample.
        landmarks: :math:`(B, 68, 2)` float32 landmarks of the target in its pixels (iBUG order).
    """

    warped: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    weights: np.ndarray
    ids: list[str]
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 68, 2), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def to_torch(
        self, device: str | torch.device = "cpu", channels_last: bool = False
    ) -> dict[str, torch.Tensor]:
        """The image arrays as tensors.

        Args:
            device: where the tensors go.
            channels_last: keep the NHWC memory layout (``torch.channels_last``) instead of making the
                tensors contiguous NCHW.

        Returns:
            ``warped``, ``target``: :math:`(B, 3, R, R)`; ``mask``, ``weights``: :math:`(B, 1, R, R)`;
            all float32.
        """
        import torch

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out: dict[str, torch.Tensor] = {}
        for name in ("warped", "target", "mask", "weights"):
            # Copy the NHWC block as it is, then reorder on the device (cheap on a GPU).
            t = torch.from_numpy(getattr(self, name)).to(device)
            out[name] = t.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        return out


def _fill(canvas: np.ndarray, points: np.ndarray, offset: tuple[int, int] = (0, 0)) -> None:
    """Fill the convex hull of points (shifted by -offset) with 1, as masks.py draws it."""
    fixed = np.round(points * (1 << masks._SHIFT)).astype(np.int32)
    fixed -= np.array(offset, dtype=np.int32) << masks._SHIFT
    cv2.fillConvexPoly(canvas, cv2.convexHull(fixed), (1,), lineType=cv2.LINE_8, shift=masks._SHIFT)


def region_weights_fast(
    landmarks: np.ndarray, size: int, eye_weight: float = 3.0, mouth_weight: float = 2.0
) -> np.ndarray:
    """:func:`faceloom.faces.masks.region_weights`, identical output, dilating only around each region.

    Args:
        landmarks: :math:`(68, 2)` points in pixels of the crop.
        size: side of the square crop.

    Returns:
        :math:`(size, size)` float32 weights: 0 off the face, 1 on it, the eye / mouth weights there.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    face = np.zeros((size, size), dtype=np.uint8)
    _fill(face, masks.extended_points(pts))
    weights = face.astype(np.float32)
    r = round(masks.FEATURE_MARGIN * interocular(pts))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)) if r > 0 else None
    for region_pts, weight in (
        (pts[RIGHT_EYE], eye_weight),
        (pts[LEFT_EYE], eye_weight),
        (pts[MOUTH][:12], mouth_weight),
    ):
        lo = np.floor(region_pts.min(axis=0)).astype(int) - r - 2
        hi = np.ceil(region_pts.max(axis=0)).astype(int) + r + 3
        x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        x1, y1 = min(int(hi[0]), size), min(int(hi[1]), size)
        if x1 <= x0 or y1 <= y0:
            continue
        region = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        _fill(region, region_pts, (x0, y0))
        if kernel is not None:
            region = np.asarray(cv2.dilate(region, kernel), dtype=np.uint8)
        weights[y0:y1, x0:x1][region.astype(bool)] = weight
    return weights


def _to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] (a cast then an in-place scale: ~2x faster than one np.multiply)."""
    out = images.astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    return out


def _affine3(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _half_pixel_scale(sx: float, sy: float) -> np.ndarray:
    """(3, 3) pixel map of a resize by (sx, sy) in OpenCV's pixel-centre convention."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _read_flag(k: float) -> int:
    """imread flag with the largest JPEG DCT reduction (2, 4, 8) that keeps ``k`` of the stored size."""
    for f, flag in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    ):
        if k * f <= 1.0:
            return int(flag)
    return int(cv2.IMREAD_COLOR)


class FaceData:
    """Training samples of one person from one faceset.

    Every face is loaded once into RAM (uint8) as the ``crop`` type derived from the stored head crop,
    with a margin of context so the random affine and warp do not reach past it: a face takes
    ``3 * L * L`` bytes, ``L`` = ``load_size`` (about ``1.33 * resolution`` with the default
    augmentation: 170 px at 128).

    Args:
        fs: the faceset.
        ids: the faces to use, in order (``fixed`` takes the first ones).
        crop: crop type the model sees (``face``, ``whole_face`` or ``head``).
        resolution: model input side ``R`` in pixels.
        seed: non-negative seed of every random draw.
        augment: augmentation settings.
        eye_weight, mouth_weight: loss weights of the eye and mouth regions.
        coverage: share of the crop side the sample shows, around its centre (faceswap's coverage).
        yaw_balance: draw faces inversely to how common their yaw is (10 degree bins; by ``|yaw|``
            when flips are on, since a flip turns a left turn into a right one), so rare angles are
            seen about as often as common ones (no face more than ~10 times as often as uniformly).
        progress: called as ``progress(done, total)`` while loading.
    """

    def __init__(
        self,
        fs: Faceset,
        ids: list[str],
        *,
        crop: CropType,
        resolution: int,
        seed: int,
        augment: AugmentConfig = DEFAULT_AUGMENT,
        eye_weight: float = 3.0,
        mouth_weight: float = 2.0,
        coverage: float = 1.0,
        yaw_balance: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if not ids:
            raise ValueError("FaceData needs at least one face id")
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8, got {resolution}")
        if not 0.0 < coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if crop not in CROP_REGIONS:
            raise ValueError(f"unknown crop type {crop!r}; expected one of {', '.join(CROP_REGIONS)}")
        rows = fs.by_id()
        missing = [i for i in ids if i not in rows]
        if missing:
            raise InputError(f"{len(missing)} face id(s) not in the faceset, e.g. {missing[0]}", fs.root)
        self.fs = fs
        self.records: list[FaceRecord] = [rows[i] for i in ids]
        self.ids: list[str] = list(ids)
        self.crop: CropType = crop
        self.resolution = resolution
        self.seed = seed
        self.augment = augment
        self.eye_weight = float(eye_weight)
        self.mouth_weight = float(mouth_weight)
        self.coverage = coverage
        self.yaw_balance = yaw_balance
        self.pad = math.ceil(resolution * (augment.margin() - 1.0) / 2.0)
        self.load_size = resolution + 2 * self.pad

        n, size = len(self.records), self.load_size
        self.images = np.empty((n, size, size, 3), dtype=np.uint8)
        """(N, L, L, 3) uint8 RGB loaded faces; the model crop is the centre R x R."""
        self.landmarks = np.empty((n, 68, 2), dtype=np.float32)
        """(N, 68, 2) landmarks in loaded-image pixels."""
        self._load(progress)

        self.yaws = np.array([r.yaw for r in self.records], dtype=np.float64)
        self.probabilities: np.ndarray | None = self._yaw_probabilities() if yaw_balance else None
        """(N,) sampling probabilities with ``yaw_balance``, else None (uniform epochs)."""
        self._perm_lock = threading.Lock()
        self._perms: dict[int, np.ndarray] = {}
        r = resolution
        xs = np.arange(r, dtype=np.float32)
        self._grid = np.stack(np.meshgrid(xs, xs), axis=-1)
        """(R, R, 2) float32 pixel coordinates (x, y) of the output."""

    # ---- loading --------------------------------------------------------------------------------
    def _load_one(self, j: int) -> None:
        rec = self.records[j]
        stored = cast(CropType, self.fs.crop)
        x0, y0, side = subcrop_box(stored, rec.size, self.crop)
        # The coverage share around the crop centre is what the model sees.
        cx, cy = x0 + side / 2.0, y0 + side / 2.0
        side *= self.coverage
        bx, by = cx - side / 2.0, cy - side / 2.0
        k = self.resolution / side
        to_load = np.array([[k, 0.0, self.pad - k * bx], [0.0, k, self.pad - k * by], [0.0, 0.0, 1.0]])

        path = self.fs.image_path(rec)
        bgr = cv2.imread(str(path), _read_flag(k))
        if bgr is None:
            raise InputError("cannot read face image", path)
        h, w = bgr.shape[:2]
        have = _half_pixel_scale(w / rec.size, h / rec.size)  # stored px -> read px
        if k < 1.0:
            nw, nh = max(1, round(rec.size * k)), max(1, round(rec.size * k))
            if nw < w:
                bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
                have = _half_pixel_scale(nw / w, nh / h) @ have
        rest = np.asarray((to_load @ np.linalg.inv(have))[:2], dtype=np.float64)
        size = self.load_size
        loaded = cv2.warpAffine(
            bgr, rest, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
        )
        self.images[j] = cv2.cvtColor(loaded, cv2.COLOR_BGR2RGB)
        pts = transform_points(rec.landmarks_array, rec.matrix_array)
        self.landmarks[j] = transform_points(pts, to_load[:2])

    def _load(self, progress: Callable[[int, int], None] | None) -> None:
        n = len(self.records)
        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceloom-load") as pool:
            for done, _ in enumerate(pool.map(self._load_one, range(n)), 1):
                if progress is not None and (done == n or done % 64 == 0):
                    progress(done, n)

    # ---- sampling -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def _yaw_probabilities(self) -> np.ndarray:
        yaw = np.abs(self.yaws) if self.augment.flip else self.yaws
        bins = np.floor(yaw / YAW_BIN_DEG).astype(np.int64)
        _, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
        n = len(yaw)
        p = 1.0 / (len(counts) * counts[inverse].astype(np.float64))
        p = np.minimum(p, YAW_MAX_BOOST / n)
        return np.asarray(p / p.sum(), dtype=np.float64)

    def _perm(self, epoch: int) -> np.ndarray:
        with self._perm_lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, _TAG_EPOCH, epoch]).permutation(len(self))
                if len(self._perms) >= 8:
                    self._perms.pop(next(iter(self._perms)))
                self._perms[epoch] = perm
            return perm

    def indices(self, step: int, batch_size: int) -> np.ndarray:
        """Which faces a step uses, a pure function of (seed, step, batch size).

        Without ``yaw_balance`` the steps walk through a fresh random permutation per epoch, so every
        face is used once per epoch; with it, faces are drawn (without repeats inside a batch where
        possible) with the :attr:`probabilities`.

        Returns:
            :math:`(batch\\_size,)` int64 indices into the faces.
        """
        if step < 0 or batch_size < 1:
            raise ValueError(f"need step >= 0 and batch_size >= 1, got {step}, {batch_size}")
        n = len(self)
        if self.probabilities is not None:
            rng = np.random.default_rng([self.seed, _TAG_BALANCE, step])
            replace = batch_size > int(np.count_nonzero(self.probabilities))
            return rng.choice(n, size=batch_size, replace=replace, p=self.probabilities).astype(np.int64)
        start = step * batch_size
        pos = np.arange(start, start + batch_size, dtype=np.int64)
        out = np.empty(batch_size, dtype=np.int64)
        epochs = pos // n
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[pos[sel] % n]
        return out

    # ---- building samples -----------------------------------------------------------------------
    def _colour(self, img: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Colour jitter of a uint8 RGB image from four uniform [-1, 1] draws (contrast, brightness,
        two chroma shifts). The jitter is affine in YCrCb, hence one 3 x 4 matrix in RGB."""
        amount = self.augment.color
        mean_y = float(_RGB_TO_YCC[0] @ np.asarray(cv2.mean(img)[:3]))
        contrast = 1.0 + amount * draws[0]
        shift = np.array(
            [
                mean_y * (1.0 - contrast) + draws[1] * amount * COLOR_BRIGHTNESS * 255,
                draws[2] * amount * COLOR_CHROMA * 128,
                draws[3] * amount * COLOR_CHROMA * 128,
            ]
        )
        m = np.empty((3, 4))
        m[:, :3] = _YCC_TO_RGB @ np.diag([contrast, 1.0, 1.0]) @ _RGB_TO_YCC
        m[:, 3] = _YCC_TO_RGB @ shift
        return np.asarray(cv2.transform(img, m))

    def _sample(self, j: int, rng: np.random.Generator | None, out: Batch, i: int) -> None:
        """Build sample ``i`` of ``out`` (uint8 images in ``out.warped`` / ``out.target`` for now) from
        face ``j``; ``rng`` None: no augmentation."""
        r, pad, aug = self.resolution, self.pad, self.augment
        img = self.images[j]
        pts = self.landmarks[j]
        if rng is None:
            out.target[i] = img[pad : pad + r, pad : pad + r]
            pts = pts - np.float32(pad)
        else:
            # Fixed draw order whatever the config, so toggling one option leaves the others alone.
            u = rng.uniform(-1.0, 1.0, size=9)
            grid = rng.standard_normal(size=(WARP_GRID, WARP_GRID, 2)).astype(np.float32)
            flip = aug.flip and u[0] > 0.0
            angle = math.radians(aug.rotation * u[1])
            s = 1.0 + aug.scale * u[2]
            tx, ty = aug.shift * u[3] * r, aug.shift * u[4] * r
            if aug.color > 0:
                img = self._colour(img, u[5:9])
            c_in, c_out = (self.load_size - 1) / 2.0, (r - 1) / 2.0
            ca, sa = s * math.cos(angle), s * math.sin(angle)
            m = np.array(
                [
                    [ca, -sa, c_out + tx - ca * c_in + sa * c_in],
                    [sa, ca, c_out + ty - sa * c_in - ca * c_in],
                ]
            )
            if flip:
                m = np.array([[-1.0, 0.0, r - 1.0], [0.0, 1.0, 0.0]]) @ _affine3(m)
            cv2.warpAffine(
                img, m, (r, r), dst=out.target[i], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
            )
            if aug.warps:
                # Smooth offsets in output pixels, then through the inverse affine into the loaded image.
                offsets = cv2.resize(
                    grid * np.float32(aug.warp_strength * WARP_SIGMA * r),
                    (r, r),
                    interpolation=cv2.INTER_CUBIC,
                )
                where = cv2.transform(self._grid + offsets, cv2.invertAffineTransform(m))
                cv2.remap(
                    img, where, _NO_MAP, cv2.INTER_LINEAR, dst=out.warped[i], borderMode=cv2.BORDER_REFLECT101
                )
            pts = transform_points(pts, m)
            if flip:
                pts = pts[IBUG_MIRROR]
        if rng is None or not aug.warps:
            out.warped[i] = out.target[i]
        out.mask[i, :, :, 0] = hull_mask(pts, r)
        out.weights[i, :, :, 0] = region_weights_fast(pts, r, self.eye_weight, self.mouth_weight)
        out.landmarks[i] = pts
        out.ids[i] = self.ids[j]

    def _build(self, idx: np.ndarray, rngs: list[np.random.Generator] | None) -> Batch:
        r, b = self.resolution, len(idx)
        work = Batch(
            warped=np.empty((b, r, r, 3), dtype=np.uint8),
            target=np.empty((b, r, r, 3), dtype=np.uint8),
            mask=np.empty((b, r, r, 1), dtype=np.float32),
            weights=np.empty((b, r, r, 1), dtype=np.float32),
            ids=[""] * b,
            landmarks=np.empty((b, 68, 2), dtype=np.float32),
        )
        for i, j in enumerate(idx):
            self._sample(int(j), None if rngs is None else rngs[i], work, i)
        work.warped = _to_unit(work.warped)
        work.target = _to_unit(work.target)
        return work

    def batch(
        self, step: int, batch_size: int, *, augment: bool = True, positions: Iterable[int] | None = None
    ) -> Batch:
        """The training batch of a step, or the given positions of it.

        Sample ``i`` draws everything from ``np.random.default_rng([seed, step, i])``, so the same
        (seed, step, batch size) always gives the same batch, in any process or thread; with
        ``positions`` each distributed rank builds exactly its slice of that one global batch.

        Args:
            step: training step (>= 0).
            batch_size: samples ``B`` of the whole (global) batch.
            augment: False gives the plain crops of the same faces (no affine, flip, colour or warp;
                ``warped`` equals ``target``).
            positions: which positions ``0 <= i < B`` of the batch to build, in order (default: all).

        Returns:
            :class:`Batch` of ``len(positions)`` (default ``B``) samples at the model resolution.
        """
        idx = self.indices(step, batch_size)
        pos = list(range(batch_size)) if positions is None else [int(i) for i in positions]
        if any(not 0 <= i < batch_size for i in pos):
            raise ValueError(f"batch positions must lie in [0, {batch_size}), got {pos}")
        rngs = [np.random.default_rng([self.seed, step, i]) for i in pos] if augment else None
        return self._build(idx[pos], rngs)

    def fixed(self, n: int) -> Batch:
        """The first ``n`` faces (all when fewer), without augmentation: previews and held-out eval.

        Returns:
            :class:`Batch` of ``min(n, len(self))`` samples; ``warped`` equals ``target``.
        """
        return self._build(np.arange(min(n, len(self)), dtype=np.int64), None)


# ---- prefetching --------------------------------------------------------------------------------
class Prefetcher(Generic[T]):
    """Builds items for steps ahead in background threads, so data never starves the model.

    numpy and OpenCV release the GIL, so batch building overlaps the training step. Items are made by
    ``make(step)`` for ``start_step, start_step + 1, ...``, up to ``depth`` steps ahead of the one
    being consumed. A :meth:`get` for any other step than the next drops what was queued and starts
    again from that step.

    Args:
        make: builds the item of one step (must be safe to call from several threads when
            ``workers > 1``).
        start_step: first step :meth:`get` will ask for.
        depth: how many steps ahead to build.
        workers: threads building items.

    Example:
        >>> with Prefetcher(lambda s: data.batch(s, 16), start_step=0) as pre:
        ...     for step in range(100):
        ...         batch = pre.get(step)
    """

    def __init__(self, make: Callable[[int], T], start_step: int, depth: int = 4, workers: int = 1) -> None:
        if depth < 1 or workers < 1:
            raise ValueError(f"depth and workers must be >= 1, got {depth}, {workers}")
        self._make = make
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceloom-prefetch")
        self._futures: dict[int, Future[T]] = {}
        self._next = start_step
        self._submitted = start_step
        self._closed = False
        self._fill()

    def _fill(self) -> None:
        while self._submitted <= self._next + self._depth - 1:
            self._futures[self._submitted] = self._pool.submit(self._make, self._submitted)
            self._submitted += 1

    def _drop(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()

    def get(self, step: int) -> T:
        """The item of ``step``; blocks until it is ready and re-raises an error of ``make``."""
        if self._closed:
            raise RuntimeError("Prefetcher is closed")
        if step != self._next:
            self._drop()
            self._submitted = step
        self._next = step + 1
        fut = self._futures.pop(step, None)
        if fut is None:
            fut = self._pool.submit(self._make, step)
            self._submitted = max(self._submitted, step + 1)
        self._fill()
        return fut.result()

    def close(self) -> None:
        """Cancel queued items and wait for the running ones to end."""
        if self._closed:
            return
        self._closed = True
        self._drop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
