"""The machine-readable synthetic label: its text, and reading it back from any image or video.

- PNG: a ``tEXt`` chunk named :data:`LABEL_KEY`;
- JPEG: the EXIF ImageDescription tag (0x010E), with EXIF Software naming faceloom;
- video: container metadata :data:`LABEL_KEY` (MP4/MOV written with
  ``movflags=use_metadata_tags`` so the custom key is stored) and the same text in the standard
  ``comment`` tag, which formats without custom keys (AVI) and ordinary remuxes keep.

The label text looks like ``synthetic=1; tool=faceloom 0.1.0`` plus any extra ``key=value``
fields the caller adds (model name, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import av
from PIL import Image, UnidentifiedImageError

from faceloom import __version__
from faceloom.errors import InputError

LABEL_KEY = "faceloom_synthetic"
"""Metadata key (PNG tEXt keyword, video container tag) that holds the synthetic label."""

LABEL_PREFIX = "synthetic=1; tool=faceloom"
"""Every label starts with this, so a label found in a generic field (``comment``) is recognisable."""

EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131


def make_label(extra: Mapping[str, object] | None = None) -> str:
    """The label text: ``synthetic=1; tool=faceloom <version>`` then ``; key=value`` per extra field.

    Keys and values may not contain ``;`` or ``=`` or line breaks (ValueError).
    """
    parts = [f"{LABEL_PREFIX} {__version__}"]
    for key, value in (extra or {}).items():
        text = str(value)
        for part in (key, text):
            if any(ch in part for ch in ";=\n\r"):
                raise ValueError(f"label field {key!r}={text!r} may not contain ';', '=' or line breaks")
        if key in ("synthetic", "tool") or not key:
            raise ValueError(f"label field name {key!r} is reserved or empty")
        parts.append(f"{key}={text}")
    return "; ".join(parts)


def parse_label(text: str) -> dict[str, str] | None:
    """Parse a label written by :func:`make_label` into a dict; None if ``text`` is not one."""
    text = text.strip().rstrip("\x00")
    if not text.startswith(LABEL_PREFIX):
        return None
    fields: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def read_label(path: str | Path) -> dict[str, str] | None:
    """Read the synthetic label of an image or video written by faceloom.

    Returns the label's fields (``{"synthetic": "1", "tool": "faceloom 0.1.0", ...}``) or None
    when the file carries no faceloom label. Raises InputError if the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    texts: list[str] = []
    try:
        with Image.open(path) as img:
            texts.extend(str(v) for k, v in img.info.items() if k == LABEL_KEY)
            desc = img.getexif().get(EXIF_IMAGE_DESCRIPTION)
            if desc is not None:
                texts.append(desc.decode("utf-8", "replace") if isinstance(desc, bytes) else str(desc))
            comment = img.info.get("comment")
            if comment is not None:
                texts.append(
                    comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
                )
    except (UnidentifiedImageError, OSError, ValueError):
        texts = _video_label_texts(path)
    for text in texts:
        fields = parse_label(text)
        if fields is not None:
            return fields
    return None


def _video_label_texts(path: Path) -> list[str]:
    try:
        with av.open(str(path), mode="r") as container:
            dicts = [container.metadata] + [s.metadata for s in container.streams]
    except (OSError, av.error.FFmpegError) as exc:
        raise InputError(f"not a readable image or video ({type(exc).__name__}: {exc})", path) from exc
    texts: list[str] = []
    for meta in dicts:
        lowered = {str(k).lower(): str(v) for k, v in meta.items()}
        for key in (LABEL_KEY, "comment", "description"):
            if key in lowered:
                texts.append(lowered[key])
    return texts
