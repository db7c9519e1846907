"""``faceloom faceset import``: facesets made by DeepFaceLab (aligned JPEGs) and faceswap (face PNGs,
with or without ``alignments.fsa``) into a faceloom faceset.

Every face keeps its frame landmarks and frame number. Its image is re-aligned to faceloom's head
crop from the face image and the landmarks in it: exactly for DFL (its files hold the frame ->
face image matrix); for faceswap, whose files hold only frame landmarks, through the similarity
that best maps them onto the landmarks faceloom's detector finds in the face image. Where the head
crop reaches past the other tool's image, its edge pixels are repeated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np

from faceloom.config import ExtractConfig
from faceloom.errors import FaceloomError, FormatError, InputError, OutputError
from faceloom.faces.align import STORED_CROP, alignment_matrix, transform_points, umeyama
from faceloom.faces.faceset import IMAGE_DIR, FaceRecord, Faceset, SourceEntry
from faceloom.faces.foreign_meta import as_points, jpeg_app15, read_dfl_jpeg, read_faceswap_png, read_fsa
from faceloom.progress import ProgressFn, report

ForeignLayout = Literal["dfl", "faceswap"]
FOREIGN_LAYOUTS: tuple[ForeignLayout, ...] = get_args(ForeignLayout)
ASSUMED_FPS = 25.0
"""Neither tool records the frame rate with a face; times are frame / 25."""
_DETECT_PAD = 0.25


@dataclass
class ForeignFace:
    """One face of another tool's faceset, in that tool's terms."""

    path: Path
    landmarks: np.ndarray
    """(68, 2) in the source frame."""
    to_image: np.ndarray | None
    """(2, 3) frame -> face image; None when it must be found from the image (faceswap)."""
    source: str
    """The video or folder the frame came from."""
    frame: int
    face_index: int
    bbox: tuple[float, float, float, float]
    frame_size: tuple[int, int] | None = None


@dataclass
class ImportResult:
    faceset: Path
    layout: ForeignLayout
    faces: int
    sources: int
    skipped: list[str] = field(default_factory=list)
    """'file: reason' for faces that could not be imported."""


def _frame_number(name: str, fallback: int) -> int:
    """0-based frame index from a frame file name: both tools number frames from 1 (``00001.png``,
    ``clip_000001.png``)."""
    digits = re.search(r"(\d+)$", Path(name).stem)
    return max(0, int(digits.group(1)) - 1) if digits else fallback


def _face_index(path: Path) -> int:
    digits = re.search(r"_(\d+)$", path.stem)
    return int(digits.group(1)) if digits else 0


def _video_name(frame_name: str) -> str:
    return re.sub(r"_?\d+$", "", Path(frame_name).stem) or Path(frame_name).stem


def _box(points: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def detect_layout(src: Path) -> ForeignLayout:
    """Which tool made the folder: DFL's aligned JPEGs or faceswap's face PNGs."""
    if not src.is_dir():
        raise InputError("not a folder of faces", src)
    jpgs = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    pngs = sorted(p for p in src.iterdir() if p.suffix.lower() == ".png")
    if jpgs and any(jpeg_app15(p.read_bytes()[:131072]) is not None for p in jpgs[:8]):
        return "dfl"
    if pngs:
        return "faceswap"
    if jpgs:
        return "dfl"  # each file then says what it lacks
    raise InputError("no DeepFaceLab aligned .jpg or faceswap face .png files here", src)


# ---- DeepFaceLab ----------------------------------------------------------------------------------
def dfl_faces(src: Path) -> Iterator[ForeignFace]:
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    for n, path in enumerate(files):
        meta = read_dfl_jpeg(path)
        in_image = as_points(meta["landmarks"], "landmarks", path)
        if meta.get("source_landmarks") is not None:
            in_frame = as_points(meta["source_landmarks"], "source_landmarks", path)
        else:  # no source recorded: the face image is the frame
            in_frame = in_image
        matrix = meta.get("image_to_face_mat")
        to_image = np.asarray(matrix, dtype=np.float64) if matrix is not None else None
        if to_image is None or to_image.shape != (2, 3) or not np.isfinite(to_image).all():
            to_image = umeyama(in_frame, in_image)[:2]
        rect = meta.get("source_rect")
        box = tuple(float(v) for v in rect) if rect is not None and len(rect) == 4 else _box(in_frame)
        name = str(meta.get("source_filename") or path.name)
        yield ForeignFace(
            path=path,
            landmarks=in_frame,
            to_image=to_image,
            source=src.parent.name if src.name.lower() == "aligned" and src.parent.name else src.name,
            frame=_frame_number(name, n),
            face_index=_face_index(path),
            bbox=box,  # type: ignore[arg-type]
        )


# ---- faceswap ---------------------------------------------------------------------------------------
def _fsa_lookup(fsa: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(name).stem: entry for name, entry in fsa.items()}


def faceswap_faces(src: Path, alignments: Path | None) -> Iterator[ForeignFace]:
    files = sorted(p for p in src.iterdir() if p.suffix.lower() == ".png")
    beside = (src / "alignments.fsa", src.parent / "alignments.fsa")
    fsa_path = alignments or next((p for p in beside if p.is_file()), None)
    frames = _fsa_lookup(read_fsa(fsa_path)) if fsa_path is not None else None
    for n, path in enumerate(files):
        header = read_faceswap_png(path)
        if header is not None:
            face, source = header["alignments"], header["source"]
            frame_name = str(source.get("source_filename") or path.name)
            index = int(source.get("face_index", _face_index(path)))
            dims = source.get("source_frame_dims")
        else:
            if frames is None:
                raise FormatError(
                    "faceswap face without its header; give its alignments.fsa (--alignments)", path
                )
            stem, index = re.sub(r"_\d+$", "", path.stem), _face_index(path)
            entry = frames.get(stem)
            faces = entry.get("faces", []) if entry else []
            if index >= len(faces):
                raise FormatError(f"no face {index} of frame {stem!r} in the alignments file", path)
            face, frame_name, dims = faces[index], stem + ".png", None
        in_frame = as_points(face.get("landmarks_xy"), "landmarks_xy", path)
        box = _box(in_frame)
        if all(k in face for k in ("x", "y", "w", "h")):
            x, y, w, h = (float(face[k]) for k in ("x", "y", "w", "h"))
            box = (x, y, x + w, y + h)
        size = (int(dims[1]), int(dims[0])) if dims is not None and len(dims) >= 2 else None
        yield ForeignFace(
            path=path,
            landmarks=in_frame,
            to_image=None,
            source=_video_name(frame_name),
            frame=_frame_number(frame_name, n),
            face_index=index,
            bbox=box,
            frame_size=size,
        )


class _ImageFit:
    """The frame -> face image similarity of a face whose tool kept only frame landmarks: the best
    fit of those landmarks onto the ones faceloom's detector finds in the face image."""

    def __init__(self) -> None:
        self.detector: Any = None

    def __call__(self, rgb: np.ndarray, in_frame: np.ndarray) -> np.ndarray | None:
        from faceloom.faces.detect import create_detector

        if self.detector is None:
            self.detector = create_detector("mediapipe", max_faces=2)
        h, w = rgb.shape[:2]
        pad = round(_DETECT_PAD * max(h, w))
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        faces = self.detector.detect(np.ascontiguousarray(padded))
        if not faces:
            return None
        centre = np.array([w / 2 + pad, h / 2 + pad])
        best = min(faces, key=lambda f: float(np.linalg.norm(f.landmarks.mean(axis=0) - centre)))
        found = np.asarray(best.landmarks, dtype=np.float64) - pad
        return np.asarray(umeyama(in_frame, found)[:2], dtype=np.float64)

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


# ---- the faceset --------------------------------------------------------------------------------------
def _listing_fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def import_faceset(
    src: str | Path,
    out: str | Path,
    *,
    size: int = ExtractConfig.size,
    image_format: str = ExtractConfig.image_format,
    alignments: str | Path | None = None,
    embed: bool = True,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Make a faceloom faceset at ``out`` from DFL's aligned folder or faceswap's faces folder ``src``.

    Raises:
        InputError / FormatError: a folder without such faces, a file without usable metadata (one
        line naming it); OutputError: ``out`` already holds something.
    """
    from faceloom.faces.identity import FaceEmbedder
    from faceloom.faces.pose import estimate_pose
    from faceloom.faces.quality import blur_score
    from faceloom.media.images import write_image

    src, out = Path(src), Path(out)
    layout = detect_layout(src)
    if out.exists() and any(out.iterdir()):
        raise OutputError("already exists and is not empty; import into a new folder", out)
    fsa = Path(alignments) if alignments else None
    faces = list(dfl_faces(src) if layout == "dfl" else faceswap_faces(src, fsa))
    if not faces:
        raise InputError(f"no faces in this {layout} folder", src)
    fs = Faceset.create(out, size=size, crop=STORED_CROP, image_format=image_format)
    fit = _ImageFit()
    embedder = FaceEmbedder() if embed else None
    listing = _listing_fingerprint([f.path for f in faces])
    keys = {n: f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', n)}-{listing[:8]}" for n in {f.source for f in faces}}
    tracks: dict[tuple[str, int], int] = {}
    taken: set[str] = set()
    rows: dict[str, list[FaceRecord]] = {k: [] for k in keys.values()}
    skipped: list[str] = []
    ext = ".png" if image_format == "png" else ".jpg"
    try:
        for n, face in enumerate(faces):
            bgr = cv2.imread(str(face.path), cv2.IMREAD_COLOR)
            if bgr is None:
                skipped.append(f"{face.path}: cannot decode the image")
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            to_image = face.to_image if face.to_image is not None else fit(rgb, face.landmarks)
            if to_image is None:
                skipped.append(f"{face.path}: no face found in the image to place its landmarks")
                continue
            in_image = transform_points(face.landmarks, to_image)
            to_crop = alignment_matrix(in_image, size, STORED_CROP)
            crop = cv2.warpAffine(
                rgb, to_crop, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
            )
            matrix = (np.vstack([to_crop, [0.0, 0.0, 1.0]]) @ np.vstack([to_image, [0.0, 0.0, 1.0]]))[:2]
            key = keys[face.source]
            face_id = f"{key}_{face.frame:06d}_{face.face_index}"
            while face_id in taken:
                face_id += "b"
            taken.add(face_id)
            rel = f"{IMAGE_DIR}/{face_id}{ext}"
            write_image(fs.root / rel, crop, synthetic=False)
            in_crop = transform_points(face.landmarks, matrix)
            if face.frame_size is not None:
                pose = estimate_pose(face.landmarks, face.frame_size)
            else:  # frame size unknown: yaw and pitch from the upright crop, roll from the frame
                yaw, pitch, _ = estimate_pose(in_crop, (size, size))
                roll = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
                pose = (yaw, pitch, -roll)
            track = tracks.setdefault((face.source, face.face_index), len(tracks))
            rows[key].append(
                FaceRecord.create(
                    id=face_id,
                    file=rel,
                    source=key,
                    frame=face.frame,
                    time=face.frame / ASSUMED_FPS,
                    track=track,
                    bbox=face.bbox,
                    score=1.0,
                    landmarks=face.landmarks,
                    matrix=matrix,
                    size=size,
                    pose=pose,
                    blur=blur_score(crop),
                    detector=f"import:{layout}",
                    embedding=embedder.embed(crop, in_crop) if embedder is not None else None,
                )
            )
            report(progress, f"import {layout} faces", n + 1, len(faces))
    finally:
        fit.close()
    for name, key in keys.items():
        mine = sorted(rows[key], key=lambda r: (r.frame, r.id))
        fs.replace_source_rows(key, mine)
        frame_size = next((f.frame_size for f in faces if f.source == name and f.frame_size), None)
        fs.set_source(
            key,
            SourceEntry(
                path=str(src.resolve()),
                kind=f"import:{layout}",
                fingerprint=listing,
                settings=f"import {layout} size={size}",
                complete=True,
                frames=len({r.frame for r in mine}),
                faces=len(mine),
                fps=ASSUMED_FPS,
                width=frame_size[0] if frame_size else 0,
                height=frame_size[1] if frame_size else 0,
            ),
        )
    fs.save()
    total = sum(len(r) for r in rows.values())
    if total == 0:
        raise FaceloomError(f"none of the {len(faces)} faces could be imported: {skipped[0]}", src)
    return ImportResult(out, layout, total, len(keys), skipped)
