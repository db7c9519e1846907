"""The on-disk faceset: aligned crops plus one versioned metadata table.

Layout of a faceset folder::

    faceset.json   header: format, version, crop type and size, extraction settings, sources
    faces.jsonl    one JSON object per face (FaceRecord)
    faces/         the aligned crops, one image per face

Both metadata files are rewritten atomically, faces.jsonl first, so a kill at any moment leaves
a faceset that loads. Images are written before the rows that name them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceloom import __version__
from faceloom.errors import FormatError, InputError
from faceloom.fsutil import atomic_write_text, content_fingerprint, ensure_dir

FORMAT_NAME = "faceloom-faceset"
FACESET_VERSION = 1
HEADER_FILE = "faceset.json"
TABLE_FILE = "faces.jsonl"
IMAGE_DIR = "faces"


def _round(a: np.ndarray | None, nd: int) -> list[Any] | None:
    return None if a is None else np.round(np.asarray(a, dtype=np.float64), nd).tolist()


@dataclass
class FaceRecord:
    """One face of a faceset. Coordinates are in the source frame as displayed (rotation applied)."""

    id: str
    file: str
    source: str
    frame: int
    time: float
    track: int
    bbox: list[float]
    score: float
    landmarks: list[list[float]]
    matrix: list[list[float]]
    size: int
    yaw: float
    pitch: float
    roll: float
    blur: float
    detector: str
    rotation: int = 0
    landmarks_full: list[list[float]] | None = None
    embedding: list[float] | None = None

    @property
    def landmarks_array(self) -> np.ndarray:
        """(68, 2) float32 landmarks in the frame."""
        return np.asarray(self.landmarks, dtype=np.float32)

    @property
    def matrix_array(self) -> np.ndarray:
        """(2, 3) frame -> crop matrix."""
        return np.asarray(self.matrix, dtype=np.float64)

    @property
    def embedding_array(self) -> np.ndarray | None:
        return None if self.embedding is None else np.asarray(self.embedding, dtype=np.float32)

    @property
    def face_size(self) -> float:
        return float(max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    def to_json(self) -> str:
        # The fields are plain lists and numbers already; asdict() would deep-copy 478 landmarks.
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def create(
        cls,
        *,
        id: str,
        file: str,
        source: str,
        frame: int,
        time: float,
        track: int,
        bbox: tuple[float, float, float, float],
        score: float,
        landmarks: np.ndarray,
        matrix: np.ndarray,
        size: int,
        pose: tuple[float, float, float],
        blur: float,
        detector: str,
        rotation: int = 0,
        landmarks_full: np.ndarray | None = None,
        embedding: np.ndarray | None = None,
    ) -> FaceRecord:
        return cls(
            id=id,
            file=file,
            source=source,
            frame=frame,
            time=round(float(time), 4),
            track=track,
            bbox=[round(float(v), 2) for v in bbox],
            score=round(float(score), 4),
            landmarks=_round(landmarks, 3) or [],
            matrix=_round(matrix, 8) or [],
            size=size,
            yaw=round(pose[0], 2),
            pitch=round(pose[1], 2),
            roll=round(pose[2], 2),
            blur=round(float(blur), 2),
            detector=detector,
            rotation=rotation,
            landmarks_full=_round(landmarks_full, 2),
            embedding=_round(embedding, 6),
        )


@dataclass
class SourceEntry:
    """What the faceset knows about one extracted input file."""

    path: str
    kind: str
    fingerprint: str
    """The file's :func:`~faceloom.fsutil.content_fingerprint` (0.1 facesets: size, mtime and content)."""
    settings: str
    complete: bool = False
    frames: int = 0
    faces: int = 0
    empty_frames: list[list[int]] = field(default_factory=list)
    """Processed frames with no face, as inclusive [first, last] ranges."""
    stopped_early: str | None = None
    dropped_by_identity: int = 0
    dropped_by_filters: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0


def to_ranges(indices: list[int]) -> list[list[int]]:
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def legacy_file_fingerprint(path: Path) -> str:
    """The fingerprint faceloom 0.1 stored for a source (size, mtime, first and last MiB); still
    accepted, so facesets extracted then are not extracted again."""
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if st.st_size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read())
    return h.hexdigest()[:20]


def legacy_source_key(path: Path) -> str:
    """The key faceloom 0.1 gave a source: its stem plus a hash of its resolved path."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]
    return f"{_stem(path)}-{digest}"


def _stem(path: Path) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:40]


def new_source_key(path: Path, content: str) -> str:
    """Short name for a new source (its face ids and crop files start with it): the file stem
    plus a hash of its content, so the name is readable and unique within a faceset."""
    return f"{_stem(path)}-{content[:8]}"


class Faceset:
    """A faceset folder loaded in memory. Mutate ``records`` and ``sources``, then ``save()``."""

    def __init__(self, root: Path, header: dict[str, Any], records: list[FaceRecord]) -> None:
        self.root = root
        self.header = header
        self.records = records

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, *, size: int, crop: str, image_format: str) -> Faceset:
        root = ensure_dir(root)
        ensure_dir(root / IMAGE_DIR)
        header = {
            "format": FORMAT_NAME,
            "version": FACESET_VERSION,
            "faceloom_version": __version__,
            "crop": crop,
            "size": size,
            "image_format": image_format,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sources": {},
        }
        return cls(root, header, [])

    @classmethod
    def is_faceset(cls, root: str | Path) -> bool:
        return (Path(root) / HEADER_FILE).exists()

    @classmethod
    def load(cls, root: str | Path) -> Faceset:
        root = Path(root)
        header_path = root / HEADER_FILE
        if not root.is_dir():
            raise InputError("no such faceset folder", root)
        if not header_path.exists():
            raise InputError(f"not a faceset (no {HEADER_FILE})", root)
        try:
            header = json.loads(header_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FormatError(f"damaged faceset header ({exc})", header_path) from exc
        if header.get("format") != FORMAT_NAME:
            raise FormatError("not a faceloom faceset header", header_path)
        version = header.get("version")
        if version != FACESET_VERSION:
            raise FormatError(
                f"faceset format version {version} is not supported by faceloom {__version__} "
                f"(reads version {FACESET_VERSION}); re-extract it or use the faceloom that wrote it",
                root,
            )
        records: list[FaceRecord] = []
        table = root / TABLE_FILE
        if table.exists():
            with open(table, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        records.append(FaceRecord(**json.loads(line)))
                    except (json.JSONDecodeError, TypeError) as exc:
                        raise FormatError(f"damaged row {n} ({exc})", table) from exc
        return cls(root, header, records)

    # ---- properties ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.header["size"])

    @property
    def crop(self) -> str:
        return str(self.header["crop"])

    @property
    def image_format(self) -> str:
        return str(self.header.get("image_format", "jpg"))

    @property
    def sources(self) -> dict[str, SourceEntry]:
        return {k: SourceEntry(**v) for k, v in self.header.get("sources", {}).items()}

    def set_source(self, key: str, entry: SourceEntry) -> None:
        self.header.setdefault("sources", {})[key] = asdict(entry)

    def image_path(self, record: FaceRecord) -> Path:
        return self.root / record.file

    def by_id(self) -> dict[str, FaceRecord]:
        return {r.id: r for r in self.records}

    def find_source(self, path: Path, content: str | None = None) -> str | None:
        """The key of the source holding the file at ``path``, found by its content, so a moved,
        renamed or copied file is still recognised; None when the faceset has none of it.

        ``content`` is the file's :func:`~faceloom.fsutil.content_fingerprint` when known already.
        """
        sources = self.header.get("sources", {})
        if not sources:
            return None
        content = content or content_fingerprint(path)
        for key, entry in sources.items():
            if entry.get("fingerprint") == content:
                return str(key)
        legacy = legacy_source_key(path)
        if legacy in sources:
            return legacy
        fp = legacy_file_fingerprint(path)
        for key, entry in sources.items():
            if entry.get("fingerprint") == fp:
                return str(key)
        return None

    def ids_fingerprint(self) -> str:
        """Identity of the faces in the faceset: a hash of their ids (model.json records it)."""
        return hashlib.sha256("\n".join(sorted(r.id for r in self.records)).encode()).hexdigest()[:16]

    @staticmethod
    def table_fingerprint(root: str | Path) -> str:
        """Hash of a faceset folder's face table and crop settings, without loading it; "" when
        there is no faceset, "damaged" when it cannot be read. Changes with every edit."""
        root = Path(root)
        header = root / HEADER_FILE
        if not header.is_file():
            return ""
        h = hashlib.sha256()
        try:
            meta = json.loads(header.read_text())
            h.update(json.dumps([meta.get("size"), meta.get("crop"), meta.get("image_format")]).encode())
            table = root / TABLE_FILE
            if table.is_file():
                h.update(table.read_bytes())
        except (OSError, json.JSONDecodeError):
            return "damaged"
        return h.hexdigest()[:16]

    # ---- mutation -----------------------------------------------------------------------
    def replace_source_rows(self, key: str, rows: list[FaceRecord]) -> None:
        """Drop every row of source ``key`` and add ``rows`` in its place."""
        self.records = [r for r in self.records if r.source != key] + rows

    def remove(self, ids: set[str], delete_images: bool = True) -> list[FaceRecord]:
        """Remove faces by id; returns the removed rows. Rows go first, images after the save."""
        removed = [r for r in self.records if r.id in ids]
        self.records = [r for r in self.records if r.id not in ids]
        self.save()
        if delete_images:
            for r in removed:
                with contextlib.suppress(FileNotFoundError):
                    self.image_path(r).unlink()
        return removed

    def save(self) -> None:
        """Write faces.jsonl then faceset.json, each atomically."""
        self.header["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.header["faces"] = len(self.records)
        atomic_write_text(self.root / TABLE_FILE, "".join(r.to_json() + "\n" for r in self.records))
        atomic_write_text(self.root / HEADER_FILE, json.dumps(self.header, indent=1))
