"""What random augmentation a training sample gets, and its constants (faceswap's, as in
:mod:`faceloom.train.data`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
