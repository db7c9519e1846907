"""The phases one training budget is split into, as experienced faceswap and DeepFaceLab users run
them by hand: warped training at the full learning rate, then the rate decays, and a last stretch
without the warp (and with the GAN and the detail losses, when they are on) sharpens what was
learnt.

Progress is the share of the budget spent (steps or minutes, whichever is further along), so a
``--minutes 40`` run and an ``--iterations 3000`` run go through the same phases; a resumed
``faceloom run`` starts from the share its earlier runs spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

PhaseName = Literal["warped", "decay", "sharpen"]
PHASE_NAMES: tuple[PhaseName, ...] = get_args(PhaseName)

StopRule = Literal["iterations", "minutes", "cancelled"]
STOP_RULES: tuple[StopRule, ...] = get_args(StopRule)
"""What ends a run's loop, first checked first (Ctrl-C, ``interrupted``, ends it from outside)."""

DECAY_FROM = 0.5
"""Share of the budget after which the learning rate falls (cosine) to :data:`LR_FLOOR` of itself."""
SHARPEN_FROM = 0.8
"""Share of the budget after which the warp is off (and the GAN on, when asked for)."""
LR_FLOOR = 0.1


@dataclass(frozen=True)
class Phase:
    """What training does at one point of the budget."""

    name: PhaseName
    warp: bool
    gan: bool
    """The GAN trains (when ``--gan`` is on)."""
    detail: bool
    """The losses on dlib's network apply (when their weights are set): they cost more than a
    step's pixel losses on a CPU, and detail is what is left to learn at the end."""
    lr_scale: float


def phase_at(progress: float, *, phased: bool = True) -> Phase:
    """The phase at ``progress`` (share of the budget spent, 0..1); ``phased=False`` is one phase
    for the whole run (warp and GAN as set, constant learning rate)."""
    if not phased:
        return Phase("warped", warp=True, gan=True, detail=True, lr_scale=1.0)
    p = min(max(progress, 0.0), 1.0)
    if p < DECAY_FROM:
        return Phase("warped", warp=True, gan=False, detail=False, lr_scale=1.0)
    t = (p - DECAY_FROM) / (1.0 - DECAY_FROM)
    scale = LR_FLOOR + (1.0 - LR_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * t))
    if p < SHARPEN_FROM:
        return Phase("decay", warp=True, gan=False, detail=False, lr_scale=scale)
    return Phase("sharpen", warp=False, gan=True, detail=True, lr_scale=scale)


def budget_progress(steps: int, iterations: int | None, elapsed_s: float, minutes: float | None) -> float:
    """Share of a run's budget spent: the further along of its ``steps`` of ``iterations`` and its
    ``elapsed_s`` of ``minutes`` (0..1)."""
    parts = []
    if iterations:
        parts.append(steps / iterations)
    if minutes:
        parts.append(elapsed_s / (minutes * 60.0))
    return min(max(parts, default=0.0), 1.0)
