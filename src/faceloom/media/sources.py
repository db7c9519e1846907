"""Turn the user's INPUT arguments (videos, images, folders) into a list of media sources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from faceloom.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".webm", ".flv", ".mpg", ".mpeg", ".m4v", ".wmv", ".ts", ".3gp"}
)

SourceKind = Literal["video", "image"]


@dataclass(frozen=True)
class MediaSource:
    path: Path
    kind: SourceKind


def classify(path: Path) -> SourceKind:
    """Guess by suffix; unknown suffixes are treated as video and probed by FFmpeg when opened."""
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def collect_sources(inputs: list[str] | list[Path] | list[str | Path]) -> list[MediaSource]:
    """Expand INPUT arguments: files are taken as they are, folders give their images and videos.

    Raises InputError for a missing path or a folder without media.
    """
    sources: list[MediaSource] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError("no such file or folder", path)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            if not found:
                raise InputError("folder holds no images or videos", path)
            sources.extend(MediaSource(p, classify(p)) for p in found)
        else:
            sources.append(MediaSource(path, classify(path)))
    seen: set[Path] = set()
    unique = []
    for src in sources:
        key = src.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(src)
    return unique
