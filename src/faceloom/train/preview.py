"""Training preview sheet: rows A, A->A, A->B, B, B->B, B->A, one column per face, over a title
line (step and phase); the faces come from different clips and head poses."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from faceloom.faces.faceset import Faceset
from faceloom.train.data import Batch
from faceloom.train.holdout import HoldOut
from faceloom.train.models.base import FaceSwapModel

ROW_LABELS = ("A", "A->A", "A->B", "B", "B->B", "B->A")
PREVIEW_FACES = 6
TITLE_H = 28


def spread_ids(fs: Faceset, holdout: HoldOut, n: int = PREVIEW_FACES) -> list[str]:
    """``n`` faces to preview, as different as the faceset allows: held-out faces first (the model
    never trained on them), training faces added when those come from fewer than ``n // 2`` clips;
    spread over head yaw, each pick from the clip used least so far.
    """
    by_id = fs.by_id()
    pool = [by_id[i] for i in holdout.holdout_ids if i in by_id]
    if len({r.source for r in pool}) < n // 2:
        pool += [by_id[i] for i in holdout.train_ids if i in by_id]
    pool.sort(key=lambda r: (r.yaw, r.id))
    if len(pool) <= n:
        return [r.id for r in pool]
    used: dict[str, int] = {}
    picks: list[str] = []
    for k in range(n):  # n equal bins of yaw; in each, the face of the least used clip (its middle)
        part = pool[k * len(pool) // n : (k + 1) * len(pool) // n]
        least = min(used.get(r.source, 0) for r in part)
        fresh = [r for r in part if used.get(r.source, 0) == least]
        pick = fresh[len(fresh) // 2]
        used[pick.source] = used.get(pick.source, 0) + 1
        picks.append(pick.id)
    return picks


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(B, 3, R, R) float [0, 1] -> (B, R, R, 3) uint8."""
    arr = t.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return np.asarray(np.round(arr * 255), dtype=np.uint8)


def render_preview(
    model: FaceSwapModel, batch_a: Batch, batch_b: Batch, device: torch.device, title: str = ""
) -> np.ndarray:
    """Run the preview faces through both decoders and lay them out as an RGB sheet (H, W, 3) uint8
    under a ``title`` line.

    Tiles are at least 128 px so a 64 px model's output is still easy to judge.
    """
    rows: list[np.ndarray] = []
    n = min(len(batch_a.ids), len(batch_b.ids))
    for batch, own, other in ((batch_a, "a", "b"), (batch_b, "b", "a")):
        x = batch.to_torch(device)["target"][:n]
        same, _ = model(x, own)
        swap, _ = model(x, other)
        rows += [_to_uint8(x), _to_uint8(same), _to_uint8(swap)]
    res = rows[0].shape[1]
    tile = max(128, res)
    label_w = 70
    sheet = np.full((TITLE_H + len(rows) * tile, label_w + n * tile, 3), 24, dtype=np.uint8)
    cv2.putText(
        sheet, title, (6, TITLE_H - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA
    )
    for r, (label, faces) in enumerate(zip(ROW_LABELS, rows, strict=True)):
        y = TITLE_H + r * tile
        cv2.putText(
            sheet,
            label,
            (6, y + tile // 2 + 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (235, 235, 235),
            1,
            cv2.LINE_AA,
        )
        for c in range(n):
            face = (
                faces[c] if res == tile else cv2.resize(faces[c], (tile, tile), interpolation=cv2.INTER_CUBIC)
            )
            sheet[y : y + tile, label_w + c * tile : label_w + (c + 1) * tile] = face
    return sheet
