"""URL inputs: fetch videos (or images) named by http/https URLs into a local folder.

A URL that serves a media file is downloaded with urllib: streamed into a temporary file beside
the final one, checked against Content-Length, then renamed, so a broken download never leaves a
file under the final name. A URL that serves a web page (HTML) is handed to ``yt-dlp`` when it is
on PATH. Each URL maps to a stable file name (a hash of the URL), so a second fetch of the same
URL reuses the file without touching the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import mimetypes
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path

from faceloom import __version__
from faceloom.errors import InputError, output_error_from_os
from faceloom.fsutil import ensure_dir
from faceloom.media.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from faceloom.progress import ProgressFn, report

CHUNK = 1 << 20
TIMEOUT_S = 30.0
_MEDIA_TYPES = frozenset(
    {
        "application/octet-stream",
        "binary/octet-stream",
        "application/mp4",
        "application/x-matroska",
        "application/ogg",
    }
)
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def is_url(value: str | Path) -> bool:
    """True for strings that look like a URL (``scheme://...``); local paths are never URLs."""
    return isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) is not None


def check_url(url: str) -> None:
    """Raise InputError unless ``url`` is an http or https URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InputError(f"unsupported URL scheme {parts.scheme!r}; use http or https", url)
    if not parts.netloc:
        raise InputError("URL has no host", url)


def url_stem(url: str) -> str:
    """The stable prefix of the file(s) a URL is fetched to."""
    return hashlib.sha1(url.encode()).hexdigest()[:10]


def fetched_path(url: str, folder: Path) -> Path | None:
    """The file an earlier fetch of ``url`` left in ``folder``, or None."""
    if not folder.is_dir():
        return None
    stem = url_stem(url)
    found = sorted(
        p for p in folder.glob(f"{stem}-*") if p.is_file() and not p.name.endswith((".part", ".tmp", ".ytdl"))
    )
    return found[0] if found else None


def _safe_name(name: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return name[:80] or "media"


def _content_type(headers: Message) -> str:
    return (headers.get_content_type() or "").lower()


def _is_media(content_type: str, url: str) -> bool:
    if content_type.startswith(("video/", "image/")) or content_type in _MEDIA_TYPES:
        return True
    if content_type in _PAGE_TYPES:
        return False
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    return suffix in VIDEO_SUFFIXES | IMAGE_SUFFIXES


def _file_name(url: str, headers: Message) -> str:
    """``<hash>-<name>``: the name from Content-Disposition or the URL path, with a media suffix."""
    name = headers.get_filename() or Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    name = _safe_name(name)
    if Path(name).suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        guessed = mimetypes.guess_extension(_content_type(headers)) or ".mp4"
        name = f"{Path(name).stem or 'media'}{guessed}"
    return f"{url_stem(url)}-{name}"


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": f"faceloom/{__version__}"})
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise InputError(f"download failed: HTTP {exc.code} {exc.reason}", url) from exc
    except urllib.error.URLError as exc:
        raise InputError(f"download failed: {exc.reason}", url) from exc
    except TimeoutError as exc:
        raise InputError(f"download failed: no answer within {timeout:g} s", url) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"download failed: {exc}", url) from exc
    return response


def _stream(
    response: http.client.HTTPResponse,
    url: str,
    final: Path,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> None:
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    tmp = final.with_name(final.name + ".part")
    done = 0
    try:
        with open(tmp, "wb") as fh:
            while True:
                if cancel is not None and cancel.is_set():
                    raise InputError("download cancelled", url)
                try:
                    block = response.read(CHUNK)
                except OSError as exc:
                    raise InputError(f"download broke off after {done} bytes ({exc})", url) from exc
                if not block:
                    break
                fh.write(block)
                done += len(block)
                report(progress, url, done, total)  # total: None when the server does not say
            fh.flush()
            os.fsync(fh.fileno())
        if total is not None and done != total:
            raise InputError(f"download broke off after {done} of {total} bytes", url)
        if done == 0:
            raise InputError("download is empty (0 bytes)", url)
        os.replace(tmp, final)
    except OSError as exc:
        raise output_error_from_os(exc, final) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _yt_dlp(url: str, folder: Path, cancel: threading.Event | None) -> Path:
    exe = shutil.which("yt-dlp")
    if exe is None:
        raise InputError("is a web page; install yt-dlp to fetch videos from pages", url)
    template = str(folder / f"{url_stem(url)}-page.%(ext)s")
    cmd = [exe, "--no-playlist", "--quiet", "--no-warnings", "-f", "mp4/best", "-o", template, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            try:
                _, err = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    proc.terminate()
                    proc.wait()
                    raise InputError("download cancelled", url) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = fetched_path(url, folder)
    if proc.returncode != 0 or found is None:
        last = (err or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise InputError(f"yt-dlp could not fetch a video from this page ({last[0]})", url)
    return found


def fetch(
    url: str,
    folder: str | Path,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """The local copy of the video or image at ``url``, downloaded into ``folder`` unless already there.

    Raises:
        InputError: not an http(s) URL, the server fails or answers with an error, the download
            breaks off, or the URL is a web page and yt-dlp is not installed.
        OutputError: ``folder`` cannot be written.
    """
    check_url(url)
    folder = Path(folder)
    found = fetched_path(url, folder)
    if found is not None:
        return found
    ensure_dir(folder)
    response = _open(url, timeout)
    with response:
        if not _is_media(_content_type(response.headers), url):
            response.close()
            return _yt_dlp(url, folder, cancel)
        final = folder / _file_name(url, response.headers)
        _stream(response, url, final, progress, cancel)
    return final


__all__ = ["check_url", "fetch", "fetched_path", "is_url"]
