"""A contact sheet of a faceset's faces, with landmarks, mask hull and crop boxes drawn on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceloom.config.choices import CropType
from faceloom.errors import InputError, OutputError
from faceloom.faces.align import CROP_REGIONS, subcrop_box
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.faceset_query import crop_landmarks, short_id
from faceloom.faces.landmarks import JAW, LEFT_BROW, LEFT_EYE, MOUTH, NOSE, RIGHT_BROW, RIGHT_EYE
from faceloom.faces.masks import hull_points
from faceloom.fsutil import atomic_write_bytes, ensure_dir

# ---- preview -------------------------------------------------------------------------------------
HEADER_H = 22
"""Height in pixels of the legend strip at the top of a preview sheet."""
CAPTION_H = 16
"""Height in pixels of the caption strip under each tile."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# BGR colours
_REGION_COLOURS: list[tuple[slice, tuple[int, int, int]]] = [
    (JAW, (210, 210, 210)),
    (RIGHT_BROW, (0, 190, 255)),
    (LEFT_BROW, (0, 190, 255)),
    (NOSE, (255, 170, 0)),
    (RIGHT_EYE, (0, 255, 0)),
    (LEFT_EYE, (0, 255, 0)),
    (MOUTH, (255, 0, 255)),
]
_HULL_COLOUR = (0, 255, 255)
_BOX_COLOURS: dict[CropType, tuple[int, int, int]] = {"face": (255, 255, 0), "whole_face": (80, 80, 255)}


def sheet_size(n_faces: int, *, columns: int = 8, max_faces: int = 64, tile: int = 160) -> tuple[int, int]:
    """(width, height) in pixels of the sheet :func:`preview_sheet` writes for ``n_faces`` faces."""
    shown = min(n_faces, max_faces)
    cols = max(1, min(columns, shown))
    rows = -(-shown // cols)
    return cols * tile, HEADER_H + rows * (tile + CAPTION_H)


_OUTLINES: list[tuple[slice, bool]] = [
    (JAW, False),
    (RIGHT_BROW, False),
    (LEFT_BROW, False),
    (slice(27, 31), False),
    (slice(31, 36), False),
    (RIGHT_EYE, True),
    (LEFT_EYE, True),
    (slice(48, 60), True),
    (slice(60, 68), True),
]


def _colour_of(index: int) -> tuple[int, int, int]:
    for region, colour in _REGION_COLOURS:
        if region.start <= index < region.stop:
            return colour
    return (255, 255, 255)


def _draw_outlines(img: np.ndarray, pts: np.ndarray) -> None:
    """Thin, dimmed feature outlines through (68, 2) points given in ``img`` pixels."""
    fixed = np.round(pts * 16).astype(np.int32)
    for part, closed in _OUTLINES:
        faded = tuple(int(c * 0.6) for c in _colour_of(part.start))
        cv2.polylines(img, [fixed[part]], closed, faded, 1, cv2.LINE_AA, shift=4)


def _draw_points(img: np.ndarray, pts: np.ndarray) -> None:
    """A small dot on each of the (68, 2) points, coloured by face region."""
    for i, (x, y) in enumerate(np.round(pts * 16).astype(np.int32)):
        cv2.circle(img, (int(x), int(y)), 10, _colour_of(i), -1, cv2.LINE_AA, shift=4)


def _fit_text(text: str, max_w: int, scale: float) -> str:
    """Shorten ``text`` to ``max_w`` pixels by eliding the middle of the part before any ``#``, so a
    short id keeps its frame number (``1001_DFA_ANG_XX#62`` -> ``1001_D..XX#62``)."""

    def width(t: str) -> int:
        return int(cv2.getTextSize(t, _FONT, scale, 1)[0][0])

    if width(text) <= max_w:
        return text
    head, sep, tail = text.rpartition("#")
    stem, suffix = (head, sep + tail) if sep else (text, "")
    for keep in range(len(stem) - 1, 0, -1):
        left = stem[: (keep + 1) // 2]
        right = stem[len(stem) - keep // 2 :] if keep // 2 else ""
        candidate = f"{left}..{right}{suffix}"
        if width(candidate) <= max_w:
            return candidate
    return suffix if width(suffix) <= max_w else text[:1]


def _tile(fs: Faceset, r: FaceRecord, tile: int, draw_landmarks: bool, draw_mask: bool) -> np.ndarray:
    img = cv2.imread(str(fs.image_path(r)), cv2.IMREAD_COLOR)
    out = np.full((tile + CAPTION_H, tile, 3), 32, dtype=np.uint8)
    if img is None:
        cv2.putText(out, "image missing", (6, tile // 2), _FONT, 0.4, (80, 80, 255), 1, cv2.LINE_AA)
    else:
        interp = cv2.INTER_AREA if img.shape[0] > tile else cv2.INTER_CUBIC
        out[:tile] = cv2.resize(img, (tile, tile), interpolation=interp)
        face = out[:tile]
        k = tile / r.size
        stored = fs.crop
        if draw_mask and stored in CROP_REGIONS:
            for wanted, colour in _BOX_COLOURS.items():
                if CROP_REGIONS[wanted].side < CROP_REGIONS[stored].side:
                    x0, y0, side = subcrop_box(stored, tile, wanted)
                    p0 = (round(x0), round(y0))
                    p1 = (round(x0 + side) - 1, round(y0 + side) - 1)
                    cv2.rectangle(face, p0, p1, colour, 1, cv2.LINE_AA)
        pts = crop_landmarks(r).astype(np.float64) * k
        if draw_landmarks:
            _draw_outlines(face, pts)
        if draw_mask:
            hull = np.round(hull_points(pts) * 16).astype(np.int32)
            cv2.polylines(face, [hull], True, _HULL_COLOUR, 1, cv2.LINE_AA, shift=4)
        if draw_landmarks:
            _draw_points(face, pts)
    yaw = f"y{r.yaw:+.0f}"
    scale = 0.36
    yaw_w = cv2.getTextSize(yaw, _FONT, scale, 1)[0][0]
    name = _fit_text(short_id(r), tile - yaw_w - 10, scale)
    base = tile + CAPTION_H - 4
    cv2.putText(out, name, (3, base), _FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)
    cv2.putText(out, yaw, (tile - yaw_w - 3, base), _FONT, scale, (160, 220, 255), 1, cv2.LINE_AA)
    return out


def _header(width: int, title: str, draw_landmarks: bool, draw_mask: bool) -> np.ndarray:
    out = np.full((HEADER_H, width, 3), 16, dtype=np.uint8)
    parts: list[tuple[str, tuple[int, int, int]]] = [(title, (235, 235, 235))]
    if draw_landmarks:
        parts += [
            ("eyes", (0, 255, 0)),
            ("brows", (0, 190, 255)),
            ("nose", (255, 170, 0)),
            ("mouth", (255, 0, 255)),
        ]
    if draw_mask:
        parts += [("mask hull", _HULL_COLOUR)] + [(f"{k} crop", c) for k, c in _BOX_COLOURS.items()]
    x = 6
    for text, colour in parts:
        cv2.putText(out, text, (x, HEADER_H - 7), _FONT, 0.4, colour, 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, _FONT, 0.4, 1)[0][0] + 12
    return out


def preview_sheet(
    fs: Faceset,
    out_path: str | Path,
    *,
    columns: int = 8,
    max_faces: int = 64,
    tile: int = 160,
    draw_landmarks: bool = True,
    draw_mask: bool = True,
) -> Path:
    """Write a contact sheet of the faceset's aligned crops, in table order.

    With more than ``max_faces`` faces, an evenly spaced sample is shown. Each tile is a stored crop
    scaled to ``tile`` px with, optionally, the 68 landmarks (coloured by region) and the mask hull
    outline with the ``face`` / ``whole_face`` training crop boxes; under it a caption with the short
    id (accepted by ``faceset remove --faces``) and the yaw in degrees. A legend strip is on top.
    The size is :func:`sheet_size`.

    Args:
        out_path: ``.png`` (or ``.jpg``) file to write atomically; its folder is created.

    Returns:
        ``out_path`` as a Path.
    """
    if columns < 1 or max_faces < 1 or tile < 48:
        raise ValueError("preview needs columns >= 1, max_faces >= 1 and tile >= 48")
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise OutputError("preview sheet must be a .png or .jpg file", out_path)
    n = len(fs.records)
    if n == 0:
        raise InputError("faceset has no faces to preview", fs.root)
    shown = min(n, max_faces)
    picks = np.unique(np.round(np.linspace(0, n - 1, shown)).astype(int))
    width, height = sheet_size(n, columns=columns, max_faces=max_faces, tile=tile)
    cols = width // tile
    sheet = np.zeros((height, width, 3), dtype=np.uint8)
    title = f"{fs.root.name}: {len(picks)} of {n} faces"
    sheet[:HEADER_H] = _header(width, title, draw_landmarks, draw_mask)
    for i, idx in enumerate(picks):
        row, col = divmod(i, cols)
        y = HEADER_H + row * (tile + CAPTION_H)
        sheet[y : y + tile + CAPTION_H, col * tile : (col + 1) * tile] = _tile(
            fs, fs.records[int(idx)], tile, draw_landmarks, draw_mask
        )
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
    ok, buf = cv2.imencode(suffix, sheet, params)
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on valid arrays
        raise OutputError("could not encode the preview sheet", out_path)
    ensure_dir(out_path.parent)
    atomic_write_bytes(out_path, buf.tobytes())
    return out_path
