"""Face metadata as DeepFaceLab and faceswap store it in their face images (read only, no code run).

* DeepFaceLab: each aligned face is a JPEG whose APP15 segment holds a pickled dict
  (``DFLIMG/DFLJPG.py``): ``landmarks`` (68, 2) in the face image, ``source_landmarks`` in the
  frame, ``image_to_face_mat`` frame -> face image, ``source_filename``, ``source_rect``,
  ``face_type``.
* faceswap: each face is a PNG with an iTXt chunk, keyword ``faceswap``, whose text is a Python
  literal dict (``lib/image.py``): ``alignments`` (x, y, w, h, ``landmarks_xy`` in the frame) and
  ``source`` (``alignments_version``, ``original_filename``, ``face_index``, ``source_filename``,
  ``source_frame_dims``). The ``alignments.fsa`` beside the frames is a zlib-compressed pickle of
  ``{"__meta__": {"version"}, "__data__": {frame name: {"faces": [...]}}}``.
"""

from __future__ import annotations

import ast
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from faceloom.errors import FormatError, InputError
from faceloom.safe_pickle import restricted_loads

APP15 = 0xEF
FACESWAP_KEYWORD = b"faceswap"
FACESWAP_VERSIONS = (2.0, 2.5)
"""faceswap alignment versions faceloom reads, [low, high): PNG headers came with 2.0."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from exc


def jpeg_app15(data: bytes) -> bytes | None:
    """The payload of a JPEG's first APP15 segment, or None; walks the segments up to the scan."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == APP15:
            return data[pos + 4 : pos + 2 + length]
        pos += 2 + length
    return None


def read_dfl_jpeg(path: Path) -> dict[str, Any]:
    """DeepFaceLab's metadata dict of an aligned face JPEG.

    Raises:
        FormatError: not a JPEG, no APP15 metadata, or metadata that is not DFL's.
    """
    data = _read(path)
    if data[:2] != b"\xff\xd8":
        raise FormatError("not a JPEG (DeepFaceLab's aligned faces are .jpg)", path)
    payload = jpeg_app15(data)
    if payload is None:
        raise FormatError("JPEG without DeepFaceLab metadata (no APP15 segment)", path)
    try:
        meta = restricted_loads(payload)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise FormatError(f"unreadable DeepFaceLab metadata: {exc}", path) from exc
    if not isinstance(meta, dict) or "landmarks" not in meta:
        raise FormatError("APP15 segment holds no DeepFaceLab face metadata (no landmarks)", path)
    return meta


def png_itxt(data: bytes, keyword: bytes) -> str | None:
    """The text of a PNG's iTXt chunk with this keyword (uncompressed or zlib), or None."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            break
        if kind != b"iTXt":
            continue
        key, _, rest = body.partition(b"\0")
        if key != keyword or len(rest) < 2:
            continue
        compressed = rest[0] == 1
        _, _, rest = rest[2:].partition(b"\0")  # language tag
        _, _, text = rest.partition(b"\0")  # translated keyword
        if compressed:
            text = zlib.decompress(text)
        # faceswap writes latin-1 with backslash escapes for anything else.
        return text.decode("latin-1")
    return None


def read_faceswap_png(path: Path) -> dict[str, Any] | None:
    """faceswap's header dict of an extracted face PNG, or None when it has none (pre-2.0 faces).

    Raises:
        FormatError: not a PNG; a header that is not a dict; an alignments version faceloom does not know.
    """
    data = _read(path)
    if not data.startswith(_PNG_SIGNATURE):
        raise FormatError("not a PNG (faceswap's extracted faces are .png)", path)
    text = png_itxt(data, FACESWAP_KEYWORD)
    if text is None:
        return None
    try:
        meta = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise FormatError(f"unreadable faceswap header: {exc}", path) from exc
    if not isinstance(meta, dict) or "alignments" not in meta or "source" not in meta:
        raise FormatError("faceswap header without alignments and source", path)
    version = meta["source"].get("alignments_version")
    if not isinstance(version, (int, float)) or not FACESWAP_VERSIONS[0] <= version < FACESWAP_VERSIONS[1]:
        raise FormatError(
            f"faceswap alignments version {version!r} is not one faceloom reads "
            f"({FACESWAP_VERSIONS[0]} up to {FACESWAP_VERSIONS[1]})",
            path,
        )
    return meta


def read_fsa(path: Path) -> dict[str, dict[str, Any]]:
    """faceswap's ``alignments.fsa``: {frame file name: {"faces": [face dicts]}}.

    Raises:
        FormatError: not a zlib-compressed pickle of faceswap's layout, or an unknown version.
    """
    try:
        data = restricted_loads(zlib.decompress(_read(path)))
    except (zlib.error, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise FormatError(f"not a faceswap alignments file: {exc}", path) from exc
    if not isinstance(data, dict):
        raise FormatError("not a faceswap alignments file (no dict inside)", path)
    if "__meta__" in data:
        version = data["__meta__"].get("version")
        if not isinstance(version, (int, float)) or not 1.0 <= version < FACESWAP_VERSIONS[1]:
            raise FormatError(f"faceswap alignments version {version!r} is not one faceloom reads", path)
        data = data.get("__data__", {})
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def as_points(value: Any, what: str, path: Path) -> np.ndarray:
    """(68, 2) float64 landmarks from a list or array, or a FormatError naming the field."""
    try:
        pts = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{what} is not a list of points", path) from exc
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise FormatError(f"{what} has shape {pts.shape}; faceloom needs 68 (x, y) points", path)
    return pts
