"""Atomic file writes: a kill or a full disk never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path

from faceloom.errors import output_error_from_os

_write_hook = None
"""Tests set this to a callable(path) that raises OSError, to inject write failures (tests run as
root, so permissions cannot be used to make a folder unwritable)."""


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Raises OutputError (naming the path) when the write fails; the old file, if any, is untouched.
    ``durable`` also fsyncs, for metadata and checkpoints; bulk images skip it for speed.
    """
    path = Path(path)
    tmp_name: str | None = None
    try:
        if _write_hook is not None:
            _write_hook(path)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise output_error_from_os(exc, path) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_dir(path: str | Path) -> Path:
    """Create a folder (and parents); OutputError if that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error_from_os(exc, path) from exc
    if not path.is_dir():
        raise output_error_from_os(NotADirectoryError(20, "not a folder"), path)
    return path


def content_fingerprint(path: str | Path) -> str:
    """Identity of a file by its content alone: its size and hashes of its first and last MiB.

    A moved, renamed or copied file keeps it (no path or time goes in); cheap for any size.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}:".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read())
    return h.hexdigest()[:20]


KEPT_MARK = ".prev-"
"""Things faceloom would otherwise delete are renamed ``NAME.prev-<label>-<time>`` beside it."""


def move_aside(path: str | Path, label: str = "") -> Path:
    """Rename ``path`` (a file or folder) to ``<stem>.prev-[<label>-]<time><suffix>`` beside it and
    return the new path. Used instead of deleting anything the user made or trained.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = f"{label}-{stamp}" if label else stamp
    stem, suffix = (path.stem, path.suffix) if path.is_file() else (path.name, "")
    target = path.with_name(f"{stem}{KEPT_MARK}{tag}{suffix}")
    k = 2
    while target.exists():
        target = path.with_name(f"{stem}{KEPT_MARK}{tag}-{k}{suffix}")
        k += 1
    try:
        os.replace(path, target)
    except OSError as exc:
        raise output_error_from_os(exc, target) from exc
    return target


def kept_aside(folder: str | Path) -> list[Path]:
    """What :func:`move_aside` kept in ``folder``, oldest move first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if KEPT_MARK in p.name), key=lambda p: p.stat().st_ctime)
