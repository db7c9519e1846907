"""The UI's request and response helpers on Starlette: JSON in and out, one error shape, files with
safe headers, and :func:`endpoint`, which runs a blocking handler in the thread pool.

Every error answers ``{"error": "one line", ...}`` with its status: :class:`HTTPError` as raised,
:class:`~faceloom.ui.security.Forbidden` 403, a :class:`~faceloom.errors.FaceloomError` 400 and a
bug 500 (the connection is never dropped).
"""

from __future__ import annotations

import json
import mimetypes
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from faceloom.errors import FaceloomError
from faceloom.ui.security import Forbidden

JSON_LIMIT = 1 << 20
_MIME_EXTRA = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".csv": "text/csv; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".toml": "text/plain; charset=utf-8",
    ".jsonl": "text/plain; charset=utf-8",
    ".mpg": "video/mpeg",
    ".flv": "video/x-flv",
}
SANDBOX_CSP = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'"
"""Workspace files are served as if from another origin: no script of theirs runs with the UI's rights."""


class HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _MIME_EXTRA:
        return _MIME_EXTRA[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, default=str), status, {"Cache-Control": "no-store"}, media_type="application/json"
    )


def error_response(status: int, message: str, **extra: Any) -> Response:
    return JSONResponse({"error": message, **extra}, status, {"Cache-Control": "no-store"})


def file_response(path: Path, headers: dict[str, str] | None = None, download: bool = False) -> Response:
    """A file with its type, range requests and, for ``download``, an attachment name."""
    if not path.is_file():
        raise HTTPError(404, "not found")
    extra = dict(headers or {})
    if download:
        extra["Content-Disposition"] = f"attachment; filename*=UTF-8''{urllib.parse.quote(path.name)}"
    return FileResponse(path, headers=extra, media_type=content_type(path))


@dataclass
class Req:
    """What a handler sees of a request: path parameters, query, headers, the body read up front."""

    request: Request
    params: dict[str, str]
    query: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HTTPError(400, "body must be a JSON object")
        return data


def as_response(exc: BaseException) -> Response:
    """The JSON answer for an exception raised by a handler."""
    if isinstance(exc, HTTPError):
        return error_response(exc.status, exc.message, **exc.extra)
    if isinstance(exc, Forbidden):
        return error_response(403, str(exc))
    if isinstance(exc, FaceloomError):
        return error_response(400, str(exc))
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


async def read_body(request: Request, limit: int = JSON_LIMIT) -> bytes:
    """The request body, refused with 413 above ``limit`` (by its Content-Length, before reading)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPError(413, "request body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, "request body too large")
    return body


Handler = Callable[[Req], Response]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that reads the body (JSON-sized), then runs ``handler`` in the thread pool
    (it touches files and workspaces), turning its exceptions into JSON errors."""

    async def call(request: Request) -> Response:
        try:
            body = await read_body(request) if request.method in ("POST", "PUT") else b""
            req = Req(request, dict(request.path_params), dict(request.query_params), body)
            return await run_in_threadpool(handler, req)
        except Exception as exc:
            return as_response(exc)

    call.__name__ = handler.__name__
    return call
