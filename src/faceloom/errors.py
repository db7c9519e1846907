"""Errors the CLI turns into one clear line and exit code 2."""

from __future__ import annotations

import errno
from pathlib import Path


class FaceloomError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class InputError(FaceloomError):
    """An input file or folder that is missing, unreadable, corrupt or of the wrong kind."""


class OutputError(FaceloomError):
    """An output location that cannot be written (permissions, full disk, exists)."""


class FormatError(FaceloomError):
    """A faceset or model dir written by another version, or damaged."""


def output_error_from_os(exc: OSError, path: str | Path) -> OutputError:
    """Turn an OSError raised while writing into an OutputError with a readable reason."""
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "not writable (permission denied or read-only)"
    else:
        reason = exc.strerror or str(exc)
    return OutputError(f"cannot write: {reason}", path)
