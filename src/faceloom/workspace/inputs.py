"""A workspace's inputs: checked when given, fingerprinted by content, made local (URLs fetched)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceloom.errors import InputError
from faceloom.fsutil import content_fingerprint
from faceloom.progress import ProgressFn
from faceloom.workspace.fetch import check_url, fetch, fetched_path, is_url

if TYPE_CHECKING:
    from faceloom.workspace.layout import WorkspaceLayout


def check_inputs(a: list[str], b: list[str], target: str | None) -> dict[str, Any]:
    """Inputs as stored: URLs as given, local paths absolute (relative ones are taken relative to the
    current folder); InputError for a missing one."""

    def one(raw: str | Path, flag: str) -> str:
        text = str(raw)
        if is_url(text):
            check_url(text)
            return text
        path = Path(text).expanduser().resolve()
        if not path.exists():
            raise InputError(f"{flag}: no such file or folder", path)
        return str(path)

    if not a:
        raise InputError("no input for person A: give --a (videos, image folders or URLs)")
    if not b:
        raise InputError("no input for person B: give --b (videos, image folders or URLs)")
    out: dict[str, Any] = {"a": [one(x, "--a") for x in a], "b": [one(x, "--b") for x in b]}
    if target:
        t = one(target, "--target")
        if not is_url(t) and Path(t).is_dir():
            raise InputError("--target must be a video file (or a URL of one), not a folder", t)
        out["target"] = t
    return out


def file_content(path: Path) -> str:
    """A file's content fingerprint, or "" when it is not there."""
    return content_fingerprint(path) if path.is_file() else ""


def input_fingerprint(ws: WorkspaceLayout, raw: str) -> Any:
    """What an input holds, by content: a file's fingerprint, a folder's media files (relative names
    and fingerprints), a URL as given. Moving inputs and pointing the workspace at the new place
    changes nothing here, so no stage is redone for it."""
    if is_url(raw):
        return {"url": raw}
    path = ws.input_path(raw)
    if path.is_dir():
        from faceloom.media.sources import collect_sources

        try:
            files = [
                [s.path.relative_to(path).as_posix(), file_content(s.path)] for s in collect_sources([path])
            ]
        except (InputError, ValueError):
            files = []
        return {"dir": files}
    return {"file": file_content(path)}


def local_input(ws: WorkspaceLayout, raw: str, progress: ProgressFn | None, cancel: threading.Event) -> Path:
    """A local path for an input, downloading a URL (once) into the workspace's inputs/."""
    if not is_url(raw):
        return ws.input_path(raw)
    found = fetched_path(raw, ws.inputs_dir)
    if found is not None:
        return found
    return fetch(raw, ws.inputs_dir, progress=progress, cancel=cancel)


def stored_input(ws: WorkspaceLayout, raw: str) -> str:
    """An input as given again to :func:`check_inputs` (URLs as they are, paths absolute)."""
    return raw if is_url(raw) else str(ws.input_path(raw))
