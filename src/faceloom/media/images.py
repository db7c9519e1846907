"""Images out: every image faceloom writes, labelled (unless a crop of real footage) and written
atomically (a temporary file renamed into place)."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from faceloom import __version__, fsutil
from faceloom.checks import check_shape
from faceloom.errors import OutputError
from faceloom.media.credentials import DEFAULT_CREDENTIALS, Credentials, sign_bytes
from faceloom.media.label import EXIF_IMAGE_DESCRIPTION, EXIF_SOFTWARE, LABEL_KEY, make_label

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})

FrameFilter = Callable[[np.ndarray, int], np.ndarray]
"""``filter(rgb, frame_index) -> rgb``: HxWx3 uint8 in, HxWx3 uint8 of the same size out.

Applied in order to every frame just before encoding. Empty by default; the invisible
watermark of :mod:`faceloom.provenance` is meant to plug in here.
"""


def apply_filters(rgb: np.ndarray, index: int, filters: Sequence[FrameFilter]) -> np.ndarray:
    for frame_filter in filters:
        out = frame_filter(rgb, index)
        if out.shape != rgb.shape or out.dtype != np.uint8:
            raise ValueError(
                f"frame filter {frame_filter!r} returned {out.shape} {out.dtype}, expected {rgb.shape} uint8"
            )
        rgb = out
    return rgb


def check_rgb(rgb: np.ndarray, what: str = "image") -> None:
    check_shape(rgb, "H W 3", what, dtype=np.uint8)


def encode_image(
    rgb: np.ndarray,
    suffix: str,
    *,
    synthetic: bool = True,
    quality: int = 95,
    compress_level: int = 1,
    label_extra: Mapping[str, object] | None = None,
) -> bytes:
    """Encode an HxWx3 uint8 RGB image as PNG, JPEG or WebP bytes (``suffix`` ``.png``, ``.jpg``,
    ``.jpeg``, ``.webp``), with the synthetic label unless ``synthetic`` is False."""
    check_rgb(rgb)
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"unsupported image format {suffix!r}: use .png, .jpg, .jpeg or .webp")
    img = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    buf = io.BytesIO()
    label = make_label(label_extra) if synthetic else None
    if suffix == ".png":
        info = PngInfo()
        if label is not None:
            info.add_text(LABEL_KEY, label)
        img.save(buf, "PNG", pnginfo=info, compress_level=compress_level)
    else:
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {quality}")
        kwargs: dict[str, Any] = {"quality": quality}
        if label is not None:
            exif = Image.Exif()
            exif[EXIF_IMAGE_DESCRIPTION] = label
            exif[EXIF_SOFTWARE] = f"faceloom {__version__}"
            kwargs["exif"] = exif.tobytes()
        img.save(buf, "WEBP" if suffix == ".webp" else "JPEG", **kwargs)
    return buf.getvalue()


def write_image(
    path: str | Path,
    rgb: np.ndarray,
    *,
    synthetic: bool = True,
    quality: int = 95,
    compress_level: int = 1,
    frame_filters: Sequence[FrameFilter] = (),
    label_extra: Mapping[str, object] | None = None,
    durable: bool = False,
    credentials: Credentials = DEFAULT_CREDENTIALS,
) -> None:
    """Write an RGB image atomically as PNG, JPEG or WebP (chosen by the suffix of ``path``), with
    the synthetic label and signed C2PA Content Credentials (unless ``synthetic`` is False).

    Args:
        path: target file, ``.png``, ``.jpg``, ``.jpeg`` or ``.webp``; its folder must exist.
        rgb: image of shape :math:`(H, W, 3)`, uint8 RGB.
        synthetic: label the file as synthetic (PNG tEXt / JPEG EXIF ImageDescription). Use
            False only for crops of real footage (facesets).
        quality: JPEG quality 1..100 (ignored for PNG).
        compress_level: PNG zlib level 0..9 (1 is fast and about 20 % larger than 6).
        frame_filters: callables ``(rgb, 0) -> rgb`` applied before encoding (empty by default;
            the invisible watermark plugs in here).
        label_extra: extra ``key=value`` fields for the label.
        durable: fsync before the rename (slower; bulk crops skip it).
        credentials: what the C2PA manifest says and who signs it
            (:mod:`faceloom.media.credentials`); ``NO_CREDENTIALS`` writes none.

    Raises:
        OutputError: the file cannot be written (full disk, permissions), naming ``path``.
        ValueError: bad array shape/dtype or unsupported suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise OutputError(f"unsupported image format {path.suffix!r}: use .png, .jpg, .jpeg or .webp", path)
    check_rgb(rgb)
    rgb = apply_filters(rgb, 0, frame_filters)
    data = encode_image(
        rgb,
        suffix,
        synthetic=synthetic,
        quality=quality,
        compress_level=compress_level,
        label_extra=label_extra,
    )
    if synthetic and credentials.enabled:
        data = sign_bytes(data, path.name, credentials)
    fsutil.atomic_write_bytes(path, data, durable=durable)


# -------------------------------------------------------------------------------------------- video
