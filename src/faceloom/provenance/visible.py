"""The visible label: "SYNTHETIC - faceloom" drawn in a corner of every frame, when asked for."""

from __future__ import annotations

import cv2
import numpy as np

from faceloom.media.images import FrameFilter


def visible_label_filter(text: str = "SYNTHETIC - faceloom") -> FrameFilter:
    """A writer frame filter that draws ``text`` in the bottom-left corner on a dark box.

    The text height is about 2.5 % of the frame height (at least legible at 240 lines) and
    shrinks to fit narrow frames. ASCII text only (OpenCV's Hershey font).
    """
    if not text or not text.isascii() or not text.isprintable():
        raise ValueError(f"visible label must be printable ASCII text, got {text!r}")
    font = cv2.FONT_HERSHEY_SIMPLEX

    def draw(rgb: np.ndarray, index: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        margin = max(2, round(h * 0.015))
        scale = max(0.35, h / 720 * 0.7)
        thickness = max(1, round(scale * 1.6))
        (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
        if tw + 4 * margin > w:
            scale *= max(w - 4 * margin, 8) / (tw + 1)
            thickness = max(1, round(scale * 1.6))
            (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
        out = np.array(rgb, dtype=np.uint8, copy=True)
        x0, y1 = margin, h - margin
        y0, x1 = max(0, y1 - th - base - 2 * margin), min(w, x0 + tw + 2 * margin)
        box = out[y0:y1, x0:x1]
        box[...] = (box.astype(np.uint16) * 3 // 10).astype(np.uint8)
        origin = (x0 + margin, y1 - margin - base // 2)
        cv2.putText(out, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        return out

    return draw
