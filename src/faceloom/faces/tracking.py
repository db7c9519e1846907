"""Link faces of consecutive frames into tracks (one person followed through a shot)."""

from __future__ import annotations

from dataclasses import dataclass, field


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    track_id: int
    bbox: tuple[float, float, float, float]
    last_frame: int


@dataclass
class Tracker:
    """Greedy IoU tracker. A track survives ``max_gap`` frames without a face (skipped frames of
    ``--every-n`` count as one step each)."""

    min_iou: float = 0.3
    max_gap: int = 5
    next_id: int = 0
    _live: list[_Track] = field(default_factory=list)

    def live_ids(self) -> set[int]:
        """Ids of the tracks that can still continue."""
        return {t.track_id for t in self._live}

    def assign(
        self, frame_index: int, boxes: list[tuple[float, float, float, float]], step: int = 1
    ) -> list[int]:
        """Track ids for the boxes of one frame, in the boxes' order."""
        self._live = [t for t in self._live if frame_index - t.last_frame <= self.max_gap * step]
        pairs = sorted(
            ((iou(t.bbox, b), ti, bi) for ti, t in enumerate(self._live) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for score, ti, bi in pairs:
            if score < self.min_iou or ti in used or ids[bi] is not None:
                continue
            used.add(ti)
            ids[bi] = self._live[ti].track_id
            self._live[ti].bbox = boxes[bi]
            self._live[ti].last_frame = frame_index
        out = []
        for bi, tid in enumerate(ids):
            if tid is None:
                tid = self.next_id
                self.next_id += 1
                self._live.append(_Track(tid, boxes[bi], frame_index))
            out.append(tid)
        return out
