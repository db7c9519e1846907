"""The invisible watermark: a keyed low-frequency luma pattern, found again after crops, rescaling,
re-encoding and JPEG.

**Embedding** (unchanged since faceloom 0.1, so older outputs verify too): a ±1 pseudo-random
pattern on a coarse :data:`GRID` of 48 x 64 cells defined relative to the frame, upsampled
bilinearly to the frame size and added equally to R, G and B (luma only). Its strength is set per
frame size so that the added pattern has an RMS of at most :data:`MAX_RMS` = 1.8 grey levels:
every marked frame has a **PSNR of at least 43 dB** against the unmarked one. The key is a
constant seed: the threat model is ordinary processing, not a forger who reads this source.

**Detection** (:meth:`Watermark.detect`) makes no assumption about where the frame was cut or how
it was scaled. Each frame's luma is shrunk to a canvas of :data:`CANVAS` pixels (3 per cell),
band-passed at the cell scale (the picture's own content removed) and weighted by the inverse of
its local energy (edges count little, flat areas much); the canvases of all frames are summed.
The sum is then matched against the key's pattern under every crop the search allows: up to
:data:`MAX_CROP` = 10 % off each side, so the visible part spans 80-100 % of the marked frame's
width and of its height, independently (any later scaling changes nothing: the pattern is relative
to the frame). For each width and height share (steps of 2 %, then 0.5 % around the best) the
pattern is drawn at that scale and the canvas is correlated with it at every allowed offset
(:func:`cv2.matchTemplate`, normalised). The score is the best correlation as a robust z-score
against all the correlations of the search (their median and median absolute deviation): without
the watermark the best of that many tries lies about 3 to 5 deviations out, with it 12 to 21 on
the test clips after every attack of ``benchmarks/provenance.py``. Found at :data:`THRESHOLD` = 8.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from faceloom.checks import check_shape
from faceloom.media.images import FrameFilter

KEY_SEED = 0x5EED_F10A
"""Seed of the built-in watermark key (constant: every faceloom install marks and detects alike)."""

GRID = (48, 64)
"""Pattern cells (rows, columns) across the whole frame, whatever its size."""

TARGET_RMS = 1.7
"""RMS (grey levels) the added pattern aims at."""

MAX_RMS = 1.8
"""RMS the added pattern never exceeds: PSNR >= 20 log10(255 / 1.8) = 43.0 dB."""

THRESHOLD = 8.0
"""Score at or above which the watermark counts as found."""

NULL_CEILING = 6.0
"""Unmarked media score below this: the best of the search's many tries lies 3 to 5 deviations out
(largest seen: 5.0, over 90 clips of the test data and 90 cropped, rescaled JPEG frames of them)."""

MAX_CROP = 0.10
"""Share of the marked frame's width or height the search allows to be cut off each side."""

CANVAS = (GRID[1] * 3, GRID[0] * 3)
"""(width, height) every frame is shrunk to for detection: 3 pixels per pattern cell."""

COARSE_STEP = 0.02
"""Step of the visible width / height share in the first pass of the search."""

FINE_STEPS = 4
"""Second pass: this many quarter steps either side of the first pass's best."""

_NOISE_FLOOR = 0.5
"""Added to the local residual energy before weighting by its inverse."""

_CELL = CANVAS[0] / GRID[1]


@dataclass(frozen=True)
class WatermarkResult:
    """What :meth:`Watermark.detect` found.

    ``score`` is the robust z-score of the best match of the search (about 3 to 5 without a
    watermark); ``found`` is ``score >= threshold``; ``frames`` the number of frames looked at;
    ``region`` the part of the marked frame the match says is visible, as (left, top, width,
    height) shares of it: (0, 0, 1, 1) for an uncropped frame.
    """

    found: bool
    score: float
    frames: int
    threshold: float = THRESHOLD
    region: tuple[float, float, float, float] | None = None


def _key_pattern(seed: int, grid: tuple[int, int]) -> np.ndarray:
    """The ±1 pattern of one key: float32 :math:`(G_h, G_w)`."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=grid)


@functools.lru_cache(maxsize=8)
def _offsets(seed: int, grid: tuple[int, int], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The pattern for one frame size as two saturating-add operands.

    Returns ``(plus, minus)``, both uint8 :math:`(H, W, 3)` and read-only: the marked frame is
    ``frame + plus - minus`` (saturated). Their difference has an RMS of at most
    :data:`MAX_RMS`.
    """
    smooth = cv2.resize(_key_pattern(seed, grid), (width, height), interpolation=cv2.INTER_LINEAR)
    rms = float(np.sqrt(np.mean(smooth.astype(np.float64) ** 2)))
    gain = TARGET_RMS / max(rms, 1e-6)
    while True:
        offset = np.rint(smooth * gain).astype(np.int16)
        if float(np.sqrt(np.mean(offset.astype(np.float64) ** 2))) <= MAX_RMS:
            break
        gain *= 0.97
    plus = np.repeat(np.clip(offset, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    minus = np.repeat(np.clip(-offset, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    plus.setflags(write=False)
    minus.setflags(write=False)
    return plus, minus


def _bandpass(x: np.ndarray) -> np.ndarray:
    """The part of a canvas at the pattern's scale: minus a Gaussian blur of one cell."""
    out: np.ndarray = x - cv2.GaussianBlur(x, (0, 0), _CELL)
    return out


@functools.lru_cache(maxsize=512)
def _template(seed: int, grid: tuple[int, int], width: int, height: int) -> np.ndarray:
    """The key's pattern as the canvas would show the whole marked frame at ``width`` x ``height``."""
    drawn = cv2.resize(_key_pattern(seed, grid), (width, height), interpolation=cv2.INTER_LINEAR)
    out = _bandpass(drawn)
    out.setflags(write=False)
    return out


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Luma of an :math:`(H, W)`, :math:`(H, W, 3)` or :math:`(H, W, 4)` uint8 frame as float32."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    check_shape(rgb, "H W 3|4", "frame")
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)


@dataclass(frozen=True)
class Watermark:
    """A keyed low-frequency luma watermark; :data:`DEFAULT_WATERMARK` is faceloom's.

    Attributes:
        seed: the key.
        grid: pattern cells (rows, columns) across the frame.
        threshold: score at which :meth:`detect` reports the watermark found.
    """

    seed: int = KEY_SEED
    grid: tuple[int, int] = GRID
    threshold: float = THRESHOLD

    def embed(self, rgb: np.ndarray, index: int = 0) -> np.ndarray:
        """Return a marked copy of an :math:`(H, W, 3)` uint8 RGB frame (``index`` is unused:
        every frame gets the same pattern, so inter-frame coding keeps it cheaply).

        The change has an RMS of at most :data:`MAX_RMS` grey levels (PSNR >= 43 dB). About
        0.2 ms for a 1280x720 frame once the pattern of that size is cached.
        """
        check_shape(rgb, "H W 3", "frame", dtype=np.uint8)
        plus, minus = _offsets(self.seed, self.grid, rgb.shape[0], rgb.shape[1])
        out: np.ndarray = cv2.add(np.ascontiguousarray(rgb), plus)
        cv2.subtract(out, minus, dst=out)
        return out

    def signal(self, frame: np.ndarray) -> np.ndarray:
        """One frame's contribution to detection: its weighted, band-passed canvas, float32
        :math:`(C_h, C_w)` with unit standard deviation (zeros for a frame without any texture)."""
        canvas = cv2.resize(_luma(frame), CANVAS, interpolation=cv2.INTER_AREA)
        residual = _bandpass(canvas)
        energy = cv2.GaussianBlur(residual * residual, (0, 0), 2 * _CELL)
        weighted = residual / (energy + _NOISE_FLOOR)
        sd = float(weighted.std())
        if sd < 1e-9:
            return np.zeros_like(weighted)
        out: np.ndarray = (weighted - weighted.mean()) / sd
        return out

    def _match(self, canvas: np.ndarray, sx: float, sy: float) -> np.ndarray:
        """Correlations of the canvas with the pattern when it shows ``sx`` x ``sy`` of the marked
        frame, at every offset the crop limit allows: :math:`(dy, dx)` float32."""
        width, height = round(CANVAS[0] / sx), round(CANVAS[1] / sy)
        found = cv2.matchTemplate(
            _template(self.seed, self.grid, width, height), canvas, cv2.TM_CCOEFF_NORMED
        )
        return found[: int(MAX_CROP * height) + 1, : int(MAX_CROP * width) + 1]

    def score(self, canvas: np.ndarray) -> tuple[float, tuple[float, float, float, float] | None]:
        """The search over crops: (robust z-score of the best match, the region it says is visible)."""
        if float(np.abs(canvas).max(initial=0.0)) < 1e-9:
            return 0.0, None
        canvas = np.ascontiguousarray(canvas, dtype=np.float32)
        lowest = 1.0 - 2 * MAX_CROP
        shares = np.arange(1.0, lowest - 1e-9, -COARSE_STEP)
        values: list[np.ndarray] = []
        best, at = -2.0, (1.0, 1.0, 0, 0)
        for sx in shares:
            for sy in shares:
                found = self._match(canvas, float(sx), float(sy))
                values.append(found.ravel())
                peak = float(found.max())
                if peak > best:
                    dy, dx = np.unravel_index(int(np.argmax(found)), found.shape)
                    best, at = peak, (float(sx), float(sy), int(dx), int(dy))
        everything = np.concatenate(values)
        median = float(np.median(everything))
        spread = 1.4826 * float(np.median(np.abs(everything - median)))
        fine = COARSE_STEP / FINE_STEPS
        sx0, sy0 = at[0], at[1]
        for i in range(-FINE_STEPS, FINE_STEPS + 1):
            for j in range(-FINE_STEPS, FINE_STEPS + 1):
                sx, sy = float(sx0 + i * fine), float(sy0 + j * fine)
                if (i or j) and lowest - 1e-9 <= sx <= 1.0 + 1e-9 and lowest - 1e-9 <= sy <= 1.0 + 1e-9:
                    found = self._match(canvas, sx, sy)
                    peak = float(found.max())
                    if peak > best:
                        dy, dx = np.unravel_index(int(np.argmax(found)), found.shape)
                        best, at = peak, (sx, sy, int(dx), int(dy))
        if not spread > 1e-9:
            return 0.0, None
        share_x, share_y, left, top = (float(v) for v in at)
        width, height = round(CANVAS[0] / share_x), round(CANVAS[1] / share_y)
        region = (round(left / width, 3), round(top / height, 3), round(share_x, 3), round(share_y, 3))
        return (best - median) / spread, region

    def detect(self, frames: Iterable[np.ndarray]) -> WatermarkResult:
        """Look for this watermark in frames (:math:`(H, W, 3)` uint8 RGB; any size, even mixed).

        The evidence of all frames is summed before the search, so more frames of a video give a
        surer answer. No frames give ``found=False, score=0``.
        """
        accumulated = np.zeros((CANVAS[1], CANVAS[0]), dtype=np.float32)
        count = 0
        for frame in frames:
            accumulated += self.signal(frame)
            count += 1
        z, region = self.score(accumulated) if count else (0.0, None)
        return WatermarkResult(
            found=z >= self.threshold, score=z, frames=count, threshold=self.threshold, region=region
        )


DEFAULT_WATERMARK = Watermark()


def embed_watermark(rgb: np.ndarray) -> np.ndarray:
    """Mark one :math:`(H, W, 3)` uint8 RGB frame with faceloom's watermark (a copy)."""
    return DEFAULT_WATERMARK.embed(rgb)


def watermark_filter(watermark: Watermark = DEFAULT_WATERMARK) -> FrameFilter:
    """A writer frame filter ``(rgb, index) -> rgb`` that adds the invisible watermark.

    Use as ``VideoWriter(..., frame_filters=[watermark_filter()])`` or
    ``write_image(..., frame_filters=[watermark_filter()])``. PSNR >= 43 dB per frame.
    """
    return watermark.embed


def detect_watermark(frames: Iterable[np.ndarray]) -> WatermarkResult:
    """Look for faceloom's watermark in frames (:math:`(H, W, 3)` uint8 RGB); see :class:`Watermark`."""
    return DEFAULT_WATERMARK.detect(frames)
