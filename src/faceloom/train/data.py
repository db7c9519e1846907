"""Training samples: face loading and augmentation (held-out splits: :mod:`.holdout`, background
batches: :mod:`.prefetch`).

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
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np

from faceloom.config.choices import CropType
from faceloom.errors import InputError
from faceloom.faces import masks
from faceloom.faces.align import CROP_REGIONS, stored_to_crop, transform_points
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.landmarks import LEFT_EYE, MOUTH, RIGHT_EYE, interocular
from faceloom.faces.masks import hull_mask
from faceloom.faces.pose import estimate_pose
from faceloom.progress import ProgressFn, report
from faceloom.train.augment import (
    COLOR_BRIGHTNESS,
    COLOR_CHROMA,
    DEFAULT_AUGMENT,
    IBUG_MIRROR,
    WARP_GRID,
    WARP_SIGMA,
    YAW_BIN_DEG,
    YAW_MAX_BOOST,
    AugmentConfig,
)

if TYPE_CHECKING:
    import torch

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
        pose: :math:`(B, 3)` float32 yaw, pitch, roll in degrees of the target's head, from those
            landmarks in the ``R x R`` crop (:func:`~faceloom.faces.pose.estimate_pose`, as eval
            measures a swap's pose).
    """

    warped: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    weights: np.ndarray
    ids: list[str]
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 68, 2), dtype=np.float32))
    pose: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.float32))

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
            ``landmarks`` :math:`(B, 68, 2)` and ``pose`` :math:`(B, 3)` when the batch has them; all
            float32.
        """
        import torch

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out: dict[str, torch.Tensor] = {}
        for name in ("warped", "target", "mask", "weights"):
            # Copy the NHWC block as it is, then reorder on the device (cheap on a GPU).
            t = torch.from_numpy(getattr(self, name)).to(device)
            out[name] = t.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        for name in ("landmarks", "pose"):
            if len(getattr(self, name)) == len(self.ids):
                out[name] = torch.from_numpy(getattr(self, name)).to(device)
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
        progress: ProgressFn | None = None,
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
        in_stored = transform_points(rec.landmarks_array, rec.matrix_array)
        crop = stored_to_crop(stored, rec.size, self.crop, self.resolution, in_stored)
        # The coverage share around the crop centre is what the model sees.
        zoom, mid = 1.0 / self.coverage, self.resolution / 2.0
        shift = mid * (1.0 - zoom) + self.pad
        around = np.array([[zoom, 0.0, shift], [0.0, zoom, shift], [0.0, 0.0, 1.0]])
        to_load = around @ np.vstack([crop, [0.0, 0.0, 1.0]])
        k = math.sqrt(abs(float(np.linalg.det(to_load[:2, :2]))))

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
        self.landmarks[j] = transform_points(in_stored, to_load[:2])

    def _load(self, progress: ProgressFn | None) -> None:
        n = len(self.records)
        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceloom-load") as pool:
            for done, _ in enumerate(pool.map(self._load_one, range(n)), 1):
                if done == n or done % 64 == 0:
                    report(progress, "load faces", done, n)

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
        out.pose[i] = estimate_pose(pts, (r, r))
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
            pose=np.empty((b, 3), dtype=np.float32),
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
