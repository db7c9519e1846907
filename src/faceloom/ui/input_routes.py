"""The UI's routes for a workspace's inputs: picking files from the allowed folders, uploads
(streamed to disk with a size cap, then opened as media), and a draft becoming a workspace once A
and B both have inputs. Mixed into :class:`faceloom.ui.workspace_routes.WorkspaceRoutes`."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_text, ensure_dir
from faceloom.media.sources import VIDEO_SUFFIXES
from faceloom.ui import security
from faceloom.ui.http import HTTPError, Req, as_response, endpoint, json_response
from faceloom.ui.registry import DRAFT_FILE, Entry, Registry
from faceloom.ui.security import Forbidden
from faceloom.workspace.workspace import Workspace

if TYPE_CHECKING:
    from faceloom.ui.config import UIConfig
    from faceloom.ui.jobs import JobManager

ROLES = ("a", "b", "target")
CONSENT_FILE = "ui-consent.json"
UPLOAD_DIR = "inputs"
UI_PRESET: dict[str, dict[str, Any]] = {"convert": {"side_by_side": True}}
"""What a workspace made in the page sets beside the defaults: its Result tab shows both videos."""


def consent_of(root: Path) -> dict[str, Any] | None:
    """The consent the workspace at ``root`` recorded (``agreed`` true), or None."""
    try:
        data = json.loads((root / CONSENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("agreed") is True else None


def inputs_of(ws: Workspace) -> dict[str, list[str]]:
    inputs = ws.settings.get("inputs", {})
    out: dict[str, list[str]] = {}
    for role in ROLES:
        v = inputs.get(role)
        if v is None or v == "":
            out[role] = []
        elif isinstance(v, list | tuple):
            out[role] = [str(x) for x in v]
        else:
            out[role] = [str(v)]
    return out


def _check_media(path: Path, shown: str) -> None:
    """Open an uploaded file as an image or video; InputError -> 415 with a clear message."""
    from faceloom.media.reader import probe_video, read_image
    from faceloom.media.sources import IMAGE_SUFFIXES

    try:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            read_image(path)
        else:
            probe_video(path)
    except FaceloomError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise HTTPError(415, f"{shown} is not a video or image faceloom can read ({reason})") from exc


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    for k in range(2, 10000):
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise HTTPError(409, f"too many files named {path.name}")


class InputRoutes:
    """Handlers of a workspace's inputs; the app provides config, registry, jobs and the helpers."""

    config: UIConfig
    registry: Registry
    jobs: JobManager

    def input_routes(self) -> list[Route]:
        return [
            Route("/api/ws/{name}/inputs", endpoint(self.api_inputs), methods=["POST"]),
            Route("/api/ws/{name}/upload", self.api_upload, methods=["POST", "PUT"]),
        ]

    def _open_ws(self, name: str) -> tuple[Workspace, Path]:
        raise NotImplementedError

    def _draft(self, entry: Entry) -> dict[str, Any]:
        raise NotImplementedError

    def _busy_check(self, name: str) -> None:
        raise NotImplementedError

    def _finalize(self, entry: Entry, data: dict[str, Any]) -> Entry:
        """Make the real workspace of a draft whose A and B have inputs; uploads move into it."""
        inputs = data["inputs"]
        if not inputs["a"] or not inputs["b"]:
            return entry
        root = self.config.workspaces / entry.name
        train = {k: data[k] for k in ("model", "iterations", "minutes") if data.get(k) is not None}
        target = inputs["target"][0] if inputs["target"] else None
        try:
            ws = Workspace.create(
                root, inputs["a"], inputs["b"], target, settings={**UI_PRESET, "train": train}
            )
        except (FaceloomError, ValueError) as exc:
            raise HTTPError(400, str(exc)) from exc
        uploads = entry.path / UPLOAD_DIR
        new_root = ws.root
        if uploads.is_dir():
            os.replace(uploads, new_root / UPLOAD_DIR)
            old = str(uploads) + os.sep

            def moved(p: str) -> str:
                return str(new_root / UPLOAD_DIR / p[len(old) :]) if p.startswith(old) else p

            ws.set_inputs(
                a=[moved(p) for p in inputs["a"]],
                b=[moved(p) for p in inputs["b"]],
                target=moved(target) if target else "",
            )
        if (entry.path / CONSENT_FILE).is_file():
            os.replace(entry.path / CONSENT_FILE, new_root / CONSENT_FILE)
        shutil.rmtree(entry.path, ignore_errors=True)  # only draft.json is left in it
        return Entry(entry.name, new_root)

    # ---- inputs and uploads -------------------------------------------------------------------
    def api_inputs(self, req: Req) -> Response:
        """Change a role's inputs: ``{"role": "a", "paths": [...], "mode": "add"|"replace"|"remove"}``.

        Each path must be a media file or a folder inside an allowed folder or the workspace itself.
        """
        name = req.params["name"]
        entry = self.registry.get(name)
        self._busy_check(name)
        body = req.json()
        role = str(body.get("role", ""))
        if role not in ROLES:
            raise HTTPError(400, f"role must be one of {', '.join(ROLES)}")
        mode = str(body.get("mode", "add"))
        if mode not in ("add", "replace", "remove"):
            raise HTTPError(400, "mode must be add, replace or remove")
        raw = body.get("paths", [])
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise HTTPError(400, "paths must be a list of strings")
        picked: list[str] = []
        if mode != "remove":
            for p in raw:
                try:
                    resolved = security.confine(Path(p), [entry.path, *self.config.allowed])
                except Forbidden as exc:
                    raise HTTPError(403, f"{p}: {exc}") from exc
                if not resolved.exists():
                    raise HTTPError(404, f"{p}: no such file or folder")
                if resolved.is_file() and not security.is_media_name(resolved.name):
                    raise HTTPError(415, f"{resolved.name}: not a video or image file")
                if role == "target" and not resolved.is_file():
                    raise HTTPError(400, "the target must be one video file")
                picked.append(str(resolved))
        with self.registry.lock:
            current = self._current_inputs(entry)[role]
            if mode == "remove":
                gone = set(raw)
                new = [p for p in current if p not in gone]
            else:
                base = [] if mode == "replace" or role == "target" else current
                new = base + [p for p in picked if p not in base]
            entry = self._store_inputs(entry, role, new)
        return json_response({"inputs": self._current_inputs(entry), "draft": entry.draft})

    def _current_inputs(self, entry: Entry) -> dict[str, list[str]]:
        if entry.draft:
            return {role: list(v) for role, v in self._draft(entry)["inputs"].items()}
        ws, _ = self._open_ws(entry.name)
        return inputs_of(ws)

    def _store_inputs(self, entry: Entry, role: str, paths: list[str]) -> Entry:
        """Save a role's inputs (a draft becomes a workspace once A and B have some)."""
        if role == "target" and len(paths) > 1:
            raise HTTPError(400, "the target is one video")
        if entry.draft:
            data = self._draft(entry)
            data["inputs"][role] = paths
            atomic_write_text(entry.path / DRAFT_FILE, json.dumps(data, indent=1))
            return self._finalize(entry, data)
        ws, _ = self._open_ws(entry.name)
        try:
            if role == "target":
                ws.set_inputs(target=paths[0] if paths else "")
            elif role == "a":
                ws.set_inputs(a=paths)
            else:
                ws.set_inputs(b=paths)
        except FaceloomError as exc:
            raise HTTPError(400, str(exc)) from exc
        return entry

    async def api_upload(self, request: Request) -> Response:
        """Raw file body; ``?role=a|b|target&name=FILE``. Streamed to ``inputs/ROLE/`` with a size cap."""
        tmp: Path | None = None
        try:
            folder, filename, role, entry = await run_in_threadpool(self._upload_target, request)
            tmp = folder / f".upload-{secrets.token_hex(6)}.part{Path(filename).suffix}"
            remaining = int(request.headers["content-length"])
            with open(tmp, "wb") as fh:
                async for chunk in request.stream():
                    fh.write(chunk)
                    remaining -= len(chunk)
            if remaining > 0:
                raise HTTPError(400, "upload broke off before its end")
            return await run_in_threadpool(self._upload_done, tmp, folder, filename, role, entry)
        except Exception as exc:
            return as_response(exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def _upload_target(self, request: Request) -> tuple[Path, str, str, Entry]:
        name = request.path_params["name"]
        entry = self.registry.get(name)
        self._busy_check(name)
        role = request.query_params.get("role", "")
        if role not in ROLES:
            raise HTTPError(400, f"role must be one of {', '.join(ROLES)}")
        given = request.query_params.get("name", "")
        filename = security.safe_filename(given)
        if not security.is_media_name(filename):
            accepted = ", ".join(sorted(security.MEDIA_SUFFIXES))
            raise HTTPError(415, f"{given!r} is not a video or image file (accepted: {accepted})")
        if role == "target" and Path(filename).suffix.lower() not in VIDEO_SUFFIXES:
            raise HTTPError(415, f"{filename}: the target must be a video")
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or "transfer-encoding" in request.headers:
            raise HTTPError(411, "the upload needs a Content-Length")
        if int(length) > int(self.config.max_upload_mb * 1024 * 1024):
            raise HTTPError(413, f"file too large: the limit is {self.config.max_upload_mb:g} MB")
        return ensure_dir(entry.path / UPLOAD_DIR / role), filename, role, entry

    def _upload_done(self, tmp: Path, folder: Path, filename: str, role: str, entry: Entry) -> Response:
        _check_media(tmp, filename)
        with self.registry.lock:
            final = _unique(folder / filename)
            os.replace(tmp, final)
            current = self._current_inputs(entry)[role]
            paths = [str(final)] if role == "target" else [*current, str(final)]
            entry = self._store_inputs(entry, role, paths)
        if not entry.draft:
            final = entry.path / UPLOAD_DIR / role / final.name
        return json_response(
            {"path": str(final), "name": final.name, "role": role, "draft": entry.draft}, 201
        )
