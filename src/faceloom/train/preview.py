"""Training preview sheet: rows A, A->A, A->B, B, B->B, B->A, one column per face."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from faceloom.train.data import Batch
from faceloom.train.models.base import FaceSwapModel

ROW_LABELS = ("A", "A->A", "A->B", "B", "B->B", "B->A")


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(B, 3, R, R) float [0, 1] -> (B, R, R, 3) uint8."""
    arr = t.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return np.asarray(np.round(arr * 255), dtype=np.uint8)


def render_preview(model: FaceSwapModel, batch_a: Batch, batch_b: Batch, device: torch.device) -> np.ndarray:
    """Run held-out faces through both decoders and lay them out as an RGB sheet (H, W, 3) uint8.

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
    sheet = np.full((len(rows) * tile, label_w + n * tile, 3), 24, dtype=np.uint8)
    for r, (label, faces) in enumerate(zip(ROW_LABELS, rows, strict=True)):
        y = r * tile
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
