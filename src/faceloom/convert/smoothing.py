"""Temporal smoothing of landmarks: the One Euro filter, and one filter per face track.

The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a first-order low-pass filter whose
cutoff frequency rises with the signal's speed: ``cutoff = min_cutoff + beta * |speed|``. A still
face gets a low cutoff, so detector jitter is removed; a moving one a high cutoff, so it is not
lagged. The speed itself is low-passed at ``d_cutoff``.
"""

from __future__ import annotations

import math

import numpy as np

from faceloom.faces.landmarks import interocular


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with the given cutoff (Hz) at time step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One Euro filter over arrays of one fixed shape.

    Args:
        min_cutoff: cutoff frequency in Hz when the signal is still; lower removes more jitter.
        beta: how fast the cutoff rises with speed (Hz per unit/s); higher lags less in motion.
        d_cutoff: cutoff frequency in Hz of the speed estimate.
        speed_axis: None takes each element's own speed; an axis (e.g. -1 for :math:`(N, 2)`
            points) takes the Euclidean norm of the speed over it, so the x and y of one point
            share one cutoff.

    Call it with each new sample and its time in seconds; the first call (and any call whose time
    is not after the previous one) starts over and returns the sample as is.

    Example:
        >>> f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
        >>> smooth = [f(x, t) for x, t in zip(samples, times)]
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 0.0,
        d_cutoff: float = 1.0,
        *,
        speed_axis: int | None = None,
    ) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.speed_axis = speed_axis
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def reset(self) -> None:
        """Forget the past: the next call returns its sample as is."""
        self._x = None
        self._dx = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample.

        Args:
            x: array of the filter's shape (fixed by the first call after a reset).
            t: time of the sample in seconds.

        Returns:
            the filtered sample, float64, same shape as ``x``.
        """
        value = np.asarray(x, dtype=np.float64)
        if self._x is None or self._dx is None or t <= self._t or value.shape != self._x.shape:
            self._x = value.copy()
            self._dx = np.zeros_like(value)
            self._t = float(t)
            return value.copy()
        dt = float(t) - self._t
        dx = (value - self._x) / dt
        dx_hat = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        if self.speed_axis is None:
            speed = np.abs(dx_hat)
        else:
            speed = np.linalg.norm(dx_hat, axis=self.speed_axis, keepdims=True)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        x_hat = np.asarray(self._x + a * (value - self._x), dtype=np.float64)
        self._x, self._dx, self._t = x_hat, np.asarray(dx_hat, dtype=np.float64), float(t)
        return x_hat.copy()


MIN_CUTOFF = 1.0
"""Hz, at strength 1: a still face's landmarks are averaged over about 1 / (2 pi) s."""

BETA = 6.0
"""Hz per (interocular distance per second), at strength 1. A point moving at one interocular
distance per second (a slow head turn; lips while talking move faster) gets a cutoff of about
7 Hz, a lag of about 20 ms."""

D_CUTOFF = 1.0
"""Hz: cutoff of the speed estimate."""

MAX_GAP = 0.5
"""Seconds: a track not seen for longer than this starts its filter over."""


class TrackSmoother:
    """One landmark filter per face track, with the same behaviour for small and large faces.

    Each track has a :class:`OneEuroFilter` over its :math:`(68, 2)` landmarks with one cutoff per
    point (speed is the norm of the point's velocity). Speeds are measured in interocular
    distances per second: ``beta`` is divided by the track's face size (a running average of the
    interocular distance), which is the same as filtering landmarks normalised by that size, so a
    face of 40 px and one of 400 px are smoothed alike (``min_cutoff`` is a frequency and needs no
    scaling).

    Args:
        strength: 0 switches smoothing off (inputs come back unchanged); 1 is the default;
            higher smooths more (``min_cutoff`` and ``beta`` are divided by it), lower less.

    Example:
        >>> smoother = TrackSmoother(1.0)
        >>> pts = smoother.smooth(track_id, landmarks, frame.time)
    """

    def __init__(self, strength: float) -> None:
        if strength < 0:
            raise ValueError(f"smoothing strength must be >= 0, got {strength}")
        self.strength = float(strength)
        self._filters: dict[int, OneEuroFilter] = {}
        self._scale: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def smooth(self, track: int, landmarks: np.ndarray, t: float) -> np.ndarray:
        """Filter one face's landmarks.

        Args:
            track: id of the face's track.
            landmarks: :math:`(68, 2)` float landmarks in frame pixels.
            t: time of the frame in seconds.

        Returns:
            :math:`(68, 2)` float32 smoothed landmarks (the input itself when strength is 0).
        """
        if self.strength == 0:
            return landmarks
        pts = np.asarray(landmarks, dtype=np.float64)
        if pts.shape != (68, 2):
            raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
        size = max(interocular(pts), 1.0)
        last = self._last.get(track)
        filt = self._filters.get(track)
        if filt is None or last is None or not 0 < t - last <= MAX_GAP:
            filt = OneEuroFilter(
                min_cutoff=MIN_CUTOFF / self.strength,
                beta=BETA / self.strength,
                d_cutoff=D_CUTOFF,
                speed_axis=-1,
            )
            self._filters[track] = filt
            self._scale[track] = size
        else:
            # Running face size: follows zooms within a second, ignores single-frame jitter.
            self._scale[track] += 0.2 * (size - self._scale[track])
        filt.beta = BETA / self.strength / self._scale[track]
        self._last[track] = float(t)
        return np.asarray(filt(pts, t), dtype=np.float32)

    def drop(self, track: int) -> None:
        """Forget a track (it ended); a later face with that id starts fresh."""
        self._filters.pop(track, None)
        self._scale.pop(track, None)
        self._last.pop(track, None)
