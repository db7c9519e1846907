"""Path confinement, access tokens and upload checks of the web UI.

Every path that comes from a request goes through :func:`confine`: it is resolved (symlinks
followed, ``..`` collapsed) and must then lie inside one of the roots the server was given (the
workspaces folder, each open workspace and the folders allowed with ``--allow``). Anything else is
refused with :class:`Forbidden`, whatever spelling got it there (``../``, ``%2e%2e%2f``, absolute
paths, symlinks pointing out).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from faceloom.media.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Workspace names and uploaded file names (after :func:`safe_filename`)."""

TOKEN_COOKIE = "faceloom_token"
TOKEN_HEADER = "X-Faceloom-Token"


class Forbidden(Exception):
    """A path outside every root the UI may touch, or a name that is not allowed."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; no expected token means none is needed."""
    if expected is None:
        return True
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def is_inside(path: Path, root: Path) -> bool:
    """``path`` (already resolved) is ``root`` (resolved) or below it."""
    return path == root or path.is_relative_to(root)


def check_relative(rel: str) -> PurePosixPath:
    """A request's relative path, refused when absolute or climbing out (before any resolving)."""
    if "\x00" in rel or "\\" in rel:
        raise Forbidden("bad character in path")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("/"):
        raise Forbidden("absolute paths are not accepted")
    if any(part == ".." for part in p.parts):
        raise Forbidden("'..' is not accepted in paths")
    return p


def confine(path: str | Path, roots: Iterable[Path]) -> Path:
    """``path`` resolved, if it lies inside one of ``roots``; else :class:`Forbidden`.

    A relative ``path`` is taken relative to the first root.
    """
    roots = [Path(r).resolve() for r in roots]
    if not roots:
        raise Forbidden("no folder is open to the UI")
    raw = str(path)
    if "\x00" in raw:
        raise Forbidden("bad character in path")
    candidate = Path(raw)
    if not candidate.is_absolute():
        check_relative(raw)
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if is_inside(resolved, root):
            return resolved
    raise Forbidden("outside the workspaces and the allowed folders")


def confine_relative(root: Path, rel: str) -> Path:
    """``root/rel`` resolved, refused unless it stays inside ``root``."""
    check_relative(rel)
    return confine(rel, [root])


def check_name(name: str, what: str = "name") -> str:
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise Forbidden(f"bad {what} {name!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    return name


def safe_filename(name: str) -> str:
    """The last component of an uploaded file's name, reduced to a safe set of characters."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:56] or "upload"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:8].lower()
    return f"{clean}.{suffix}" if suffix else clean


def is_media_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in MEDIA_SUFFIXES
