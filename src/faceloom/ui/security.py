"""Path confinement, access tokens, upload checks and the access guard of the web UI.

Every path that comes from a request goes through :func:`confine`: it is resolved (symlinks
followed, ``..`` collapsed) and must then lie inside one of the roots the server was given (the
workspaces folder, each open workspace and the folders allowed with ``--allow``). Anything else is
refused with :class:`Forbidden`, whatever spelling got it there (``../``, ``%2e%2e%2f``, absolute
paths, symlinks pointing out).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import urllib.parse
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

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


# ---- the access guard ---------------------------------------------------------------------------
def split_path(raw_path: str) -> list[str]:
    """Decode a raw URL path into segments; a segment that decodes to a separator or '..' is refused."""
    segments = []
    for part in raw_path.split("/"):
        if part == "":
            continue
        seg = urllib.parse.unquote(part, errors="strict")
        if seg in (".", "..") or "/" in seg or "\\" in seg or "\x00" in seg:
            raise Forbidden("bad path segment")
        segments.append(seg)
    return segments


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"SAMEORIGIN"),
]


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Guard:
    """ASGI middleware: every rule of who may ask what, checked before a route runs.

    - the raw path is split and decoded by :func:`split_path`, so ``%2e%2e%2f`` and friends never
      reach a route;
    - on loopback the Host header must name a loopback host (no DNS rebinding);
    - with a token, every request carries it (``?token=`` once, then an HttpOnly SameSite=Strict
      cookie; or the ``X-Faceloom-Token`` header, or ``Authorization: Bearer``);
    - requests that change anything carry ``X-Faceloom: 1`` (a cross-site form cannot) and an Origin,
      when there is one, that is this server;
    - every response gets ``nosniff``, ``no-referrer`` and ``SAMEORIGIN`` framing.
    """

    def __init__(self, app: Any, config: Any) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = dict(
            urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        method = scope.get("method", "GET")
        try:
            raw = scope.get("raw_path") or scope["path"].encode()
            try:
                segments = split_path(raw.decode("latin-1"))
            except (Forbidden, UnicodeDecodeError) as exc:
                raise _Refused(403, "path refused") from exc
            self._check_host(headers)
            expected = self.config.token
            if not token_ok(expected, self._given_token(headers, query)):
                raise _Refused(401, "access token required: open the URL that `faceloom ui` printed")
            writes = scope["type"] == "http" and method not in ("GET", "HEAD")
            if writes and headers.get("x-faceloom") != "1":
                raise _Refused(
                    403, "missing X-Faceloom header (requests that change things come from the page)"
                )
            self._check_origin(headers)
        except _Refused as exc:
            await self._refuse(scope, send, exc.status, str(exc))
            return
        cookie = None
        if expected and "token" in query:
            cookie = f"{TOKEN_COOKIE}={expected}; Path=/; HttpOnly; SameSite=Strict".encode()
            if scope["type"] == "http" and method == "GET" and not segments:
                await self._send(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie)])
                return

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = list(_SECURITY_HEADERS) + ([(b"set-cookie", cookie)] if cookie else [])
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    h for h in extra if h[0] not in names
                ]
            await send(message)

        await self.app(scope, receive, guarded_send)

    def _check_host(self, headers: dict[str, str]) -> None:
        if not is_loopback(self.config.host):
            return
        hostname = urllib.parse.urlsplit(f"//{headers.get('host', '')}").hostname or ""
        if not is_loopback(hostname):
            raise _Refused(403, "this UI answers only to a loopback host name (127.0.0.1 or localhost)")

    def _check_origin(self, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != headers.get("host", ""):
            raise _Refused(403, "cross-origin request refused")

    @staticmethod
    def _given_token(headers: dict[str, str], query: dict[str, str]) -> str | None:
        if headers.get(TOKEN_HEADER.lower()):
            return headers[TOKEN_HEADER.lower()]
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if "token" in query:
            return query["token"]
        for part in headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == TOKEN_COOKIE:
                return v
        return None

    async def _refuse(self, scope: dict[str, Any], send: Any, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps({"error": message}).encode()
        await self._send(send, status, body, [(b"content-type", b"application/json")])

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, *_SECURITY_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
