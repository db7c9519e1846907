"""How sure a mean over held-out faces is: a percentile bootstrap interval.

Eval scores a model on a few dozen held-out faces, so a figure such as the mean pose error moves by
tenths of a degree with which faces were drawn. The interval says how far: resample the faces with
replacement, take the mean of each resample, and read the central ``level`` share of those means.
A fixed seed makes the interval of one report reproducible.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
"""Resamples drawn; the interval's ends move by about 0.01 of its width between seeds at this count."""

INTERVAL_LEVEL = 0.95
"""The share of resampled means inside the interval."""


def bootstrap_mean_interval(
    values: np.ndarray,
    level: float = INTERVAL_LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    Args:
        values: one figure per face, :math:`(N,)`, N >= 1.
        level: the interval's coverage, in (0, 1).
        resamples: bootstrap resamples drawn.
        seed: seeds the resampling.

    Returns:
        ``(low, high)``; both equal the one value when N is 1.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty (N,) array, got shape {v.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)
