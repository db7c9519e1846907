"""Which faces of a faceset train and which are held out to score the model (whole clips or blocks of
frames, never scattered frames: neighbouring frames are near twins)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceloom.faces.faceset import FaceRecord, Faceset


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
