"""The web UI's HTTP server: a small router over the standard library's ThreadingHTTPServer.

No logic of its own: workspaces are :class:`faceloom.workspace.Workspace`, face removal is
:func:`faceloom.faceset_tools.remove_faces`, and every stage runs as ``faceloom run`` in a job
process (:mod:`faceloom.ui.jobs`). The page (``static/``) is plain HTML and JavaScript that polls
the JSON API about once a second.

Security (see :mod:`faceloom.ui.security`):

- binds 127.0.0.1 unless told otherwise; off loopback every request needs the access token
  (``?token=`` once, then an HttpOnly SameSite=Strict cookie; or the ``X-Faceloom-Token`` header);
- on loopback the Host header must name a loopback host (no DNS rebinding);
- requests that change anything must carry the ``X-Faceloom: 1`` header, which a cross-site form
  cannot send, and an Origin, when there is one, must be this server;
- every path from a request is resolved and must stay inside the workspaces or the allowed folders;
  workspace files are served with ``Content-Security-Policy: sandbox`` and ``nosniff``;
- uploads: media suffixes only, streamed to disk up to ``max_upload_mb``, then opened as a video or
  image (anything else is deleted and refused with a clear message).
"""

from __future__ import annotations

import contextlib
import csv
import email.utils
import json
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from faceloom import __version__
from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_text, ensure_dir
from faceloom.media.sources import VIDEO_SUFFIXES
from faceloom.ui import security
from faceloom.ui.jobs import FINISHED, Job, JobError, JobManager, JobState, log_tail
from faceloom.ui.security import Forbidden

STATIC_DIR = Path(__file__).with_name("static")
STAGE_NAMES = ("extract", "analyze", "train", "convert", "eval")
ROLES = ("a", "b", "target")
MODELS = ("lite", "original", "loom")
"""The architectures `faceloom run --model` offers (importing the registry would load torch here)."""
CONSENT_FILE = "ui-consent.json"
DRAFT_FILE = "draft.json"
PREVIEW_DIR = "ui-preview"
UPLOAD_DIR = "inputs"
CONSENT_TEXT = (
    "I have the consent of everyone whose face I swap. Putting someone's face into a video without "
    "their consent can harm them and is unlawful in many places. Every output is labelled as synthetic."
)
CHUNK = 1 << 20
LOG_POINTS = 600
FACES_PAGE = 240
_SETTING_VALUE = re.compile(r"^[A-Za-z0-9_+.-]{0,40}$")
_PATHLIKE_KEYS = ("path", "dir", "file", "out", "root", "init", "ref", "input", "target", "source")
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


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _MIME_EXTRA:
        return _MIME_EXTRA[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


# ---- configuration ------------------------------------------------------------------------------------
@dataclass
class UIConfig:
    """What ``faceloom ui`` was started with.

    Args:
        workspaces: folder where new workspaces are created (and listed from).
        allowed: folders whose media may be picked as inputs (read only), and existing workspaces opened.
        host, port: where to listen; 127.0.0.1 by default, port 0 takes a free one.
        token: access token; required for every request when set. ``faceloom ui`` makes one
            whenever ``host`` is not loopback.
        max_upload_mb: largest upload accepted.
        max_training_jobs, max_jobs: job slots (training jobs beyond these wait in the queue).
        state_dir: jobs.json and the list of opened workspaces; ``workspaces/.faceloom-ui`` by default.
        nice: niceness of job processes.
    """

    workspaces: Path
    allowed: list[Path] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    max_upload_mb: float = 2048
    max_training_jobs: int = 1
    max_jobs: int = 2
    state_dir: Path | None = None
    nice: int = 10

    def __post_init__(self) -> None:
        self.workspaces = Path(self.workspaces).expanduser().resolve()
        self.allowed = [Path(p).expanduser().resolve() for p in self.allowed]
        if self.state_dir is None:
            self.state_dir = self.workspaces / ".faceloom-ui"
        if not security.is_loopback(self.host) and not self.token:
            raise ValueError("an access token is required when the UI listens beyond this machine")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    download_name: str | None = None


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=str).encode()
    return Response(status, body, {"Content-Type": "application/json", "Cache-Control": "no-store"})


@dataclass
class Request:
    method: str
    path: str
    segments: list[str]
    query: dict[str, str]
    headers: Any
    rfile: Any
    length: int | None

    def json(self, limit: int = 1 << 20) -> dict[str, Any]:
        if self.length is None or self.length == 0:
            return {}
        if self.length > limit:
            raise HTTPError(413, "request body too large")
        raw = self.rfile.read(self.length)
        self.length = 0
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise HTTPError(400, f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HTTPError(400, "body must be a JSON object")
        return data


Handler = Callable[[Request, list[str]], Response]


# ---- workspaces -------------------------------------------------------------------------------------------
def _workspace_api() -> Any:
    import faceloom.workspace as wsmod

    return wsmod


@dataclass(frozen=True)
class Entry:
    """A workspace the UI knows, or a draft (a name and inputs, before both A and B are given)."""

    name: str
    path: Path
    draft: bool = False


class Registry:
    """Workspaces the UI knows: folders in ``workspaces``, ones opened from allowed folders, and drafts.

    A workspace needs inputs for A and B (``Workspace.create`` refuses it without), so a workspace
    made in the page starts as a draft in ``<state dir>/drafts/NAME`` (``draft.json`` and uploads
    under ``inputs/``) and becomes a real workspace in ``workspaces/NAME`` as soon as A and B both
    have an input (:meth:`UIApp._finalize`).
    """

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        assert config.state_dir is not None
        self.file = config.state_dir / "workspaces.json"
        self.drafts = config.state_dir / "drafts"
        self.lock = threading.RLock()

    def _opened(self) -> dict[str, str]:
        try:
            data = json.loads(self.file.read_text())
            return {str(k): str(v) for k, v in data.get("opened", {}).items()}
        except (OSError, json.JSONDecodeError, AttributeError):
            return {}

    def all(self) -> dict[str, Entry]:
        wsmod = _workspace_api()
        out: dict[str, Entry] = {}
        root = self.config.workspaces
        if root.is_dir():
            for p in sorted(root.iterdir()):
                if p.is_dir() and security.NAME_RE.fullmatch(p.name) and wsmod.Workspace.is_workspace(p):
                    out[p.name] = Entry(p.name, p.resolve())
        for name, path in self._opened().items():
            p = Path(path)
            if name not in out and security.NAME_RE.fullmatch(name) and wsmod.Workspace.is_workspace(p):
                out[name] = Entry(name, p.resolve())
        if self.drafts.is_dir():
            for p in sorted(self.drafts.iterdir()):
                if p.name not in out and security.NAME_RE.fullmatch(p.name) and (p / DRAFT_FILE).is_file():
                    out[p.name] = Entry(p.name, p.resolve(), draft=True)
        return out

    def get(self, name: str) -> Entry:
        try:
            security.check_name(name, "workspace name")
        except Forbidden as exc:
            raise HTTPError(404, str(exc)) from exc
        entry = self.all().get(name)
        if entry is None:
            raise HTTPError(404, f"no workspace {name!r}")
        return entry

    def roots(self) -> list[Path]:
        return [e.path for e in self.all().values()]

    def taken(self, name: str) -> bool:
        return name in self.all() or (self.config.workspaces / name).exists() or (self.drafts / name).exists()

    def open(self, path: Path) -> str:
        """Register an existing workspace folder (already confined by the caller); returns its name."""
        with self.lock:
            known = self.all()
            for name, e in known.items():
                if e.path == path:
                    return name
            base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("._-")[:56] or "workspace"
            name, k = base, 2
            while self.taken(name):
                name, k = f"{base}-{k}", k + 1
            opened = self._opened()
            opened[name] = str(path)
            atomic_write_text(self.file, json.dumps({"opened": opened}, indent=1))
            return name


def _stage_json(st: Any) -> dict[str, Any]:
    return {
        "state": getattr(st, "state", None),
        "seconds": getattr(st, "seconds", None),
        "error": getattr(st, "error", None),
        "finished": getattr(st, "finished", None),
    }


def _inputs_of(ws: Any) -> dict[str, list[str]]:
    inputs = ws.settings.get("inputs", {}) if isinstance(ws.settings, dict) else {}
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


def _rel_to(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    if not resolved.exists() or not security.is_inside(resolved, root):
        return None
    return resolved.relative_to(root).as_posix()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, ValueError):
        return None


def _loss_log(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "log.csv"
    if not path.is_file():
        return {"columns": [], "rows": []}
    with contextlib.suppress(OSError), open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [c for c in (reader.fieldnames or []) if c == "step" or c.startswith(("loss_", "holdout_"))]
        rows: list[list[float | None]] = []
        for r in reader:
            row: list[float | None] = []
            for c in fields:
                try:
                    row.append(float(r.get(c) or "nan"))
                except ValueError:
                    row.append(None)
            if row and row[0] is not None:
                rows.append([None if v is not None and v != v else v for v in row])
        if len(rows) > LOG_POINTS:
            stride = -(-len(rows) // LOG_POINTS)
            rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        return {"columns": fields, "rows": rows}
    return {"columns": [], "rows": []}


# ---- the application ----------------------------------------------------------------------------------
class UIApp:
    """Routes and their handlers; one instance per server."""

    def __init__(self, config: UIConfig, jobs: JobManager | None = None) -> None:
        self.config = config
        assert config.state_dir is not None
        ensure_dir(config.workspaces)
        ensure_dir(config.state_dir)
        self.registry = Registry(config)
        self.jobs = jobs or JobManager(
            config.state_dir,
            max_training=config.max_training_jobs,
            max_jobs=config.max_jobs,
            nice=config.nice,
            outcome=self._job_outcome,
        )
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        r = self._route
        r("GET", r"", self.page_index)
        r("GET", r"static/([^/]+)", self.static_file)
        r("GET", r"api/info", self.api_info)
        r("GET", r"api/workspaces", self.api_workspaces)
        r("POST", r"api/workspaces", self.api_create)
        r("POST", r"api/workspaces/open", self.api_open)
        r("GET", r"api/browse", self.api_browse)
        r("GET", r"api/jobs", self.api_jobs)
        r("GET", r"api/jobs/([^/]+)/log", self.api_job_log)
        r("POST", r"api/jobs/([^/]+)/stop", self.api_job_stop)
        r("POST", r"api/jobs/([^/]+)/resume", self.api_job_resume)
        r("GET", r"api/ws/([^/]+)", self.api_ws)
        r("POST", r"api/ws/([^/]+)/inputs", self.api_inputs)
        r("POST", r"api/ws/([^/]+)/upload", self.api_upload)
        r("PUT", r"api/ws/([^/]+)/upload", self.api_upload)
        r("GET", r"api/ws/([^/]+)/faces/([^/]+)", self.api_faces)
        r("POST", r"api/ws/([^/]+)/faces/([^/]+)/remove", self.api_faces_remove)
        r("POST", r"api/ws/([^/]+)/settings", self.api_settings)
        r("POST", r"api/ws/([^/]+)/consent", self.api_consent)
        r("POST", r"api/ws/([^/]+)/run", self.api_run)
        r("GET", r"api/ws/([^/]+)/trainlog", self.api_trainlog)
        r("GET", r"api/ws/([^/]+)/video/([^/]+)", self.api_video)
        r("GET", r"files/ws/([^/]+)/(.+)", self.ws_file)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def dispatch(self, req: Request) -> Response:
        joined = "/".join(req.segments)
        allowed_methods: set[str] = set()
        for method, pattern, handler in self.routes:
            m = pattern.fullmatch(joined)
            if m is None:
                continue
            if method != req.method:
                allowed_methods.add(method)
                continue
            return handler(req, list(m.groups()))
        if allowed_methods:
            raise HTTPError(405, f"use {', '.join(sorted(allowed_methods))}")
        raise HTTPError(404, "not found")

    # ---- helpers ---------------------------------------------------------------------------------------

    def _open_ws(self, name: str) -> tuple[Any, Path]:
        entry = self.registry.get(name)
        if entry.draft:
            raise HTTPError(409, "add inputs for A and B first: the workspace is made when both have one")
        try:
            return _workspace_api().Workspace.open(entry.path), entry.path
        except FaceloomError as exc:
            raise HTTPError(409, str(exc)) from exc

    def _draft(self, entry: Entry) -> dict[str, Any]:
        data = _read_json(entry.path / DRAFT_FILE)
        if not isinstance(data, dict):
            raise HTTPError(409, f"damaged draft {entry.path / DRAFT_FILE}")
        inputs = data.setdefault("inputs", {})
        for role in ROLES:
            inputs.setdefault(role, [])
        return data

    def _save_draft(self, entry: Entry, data: dict[str, Any]) -> None:
        atomic_write_text(entry.path / DRAFT_FILE, json.dumps(data, indent=1))

    def _finalize(self, entry: Entry, data: dict[str, Any]) -> Entry:
        """Make the real workspace of a draft whose A and B have inputs; uploads move into it."""
        inputs = data["inputs"]
        if not inputs["a"] or not inputs["b"]:
            return entry
        root = self.config.workspaces / entry.name
        kw = {k: data[k] for k in ("model", "iterations", "minutes") if data.get(k) is not None}
        target = inputs["target"][0] if inputs["target"] else None
        try:
            ws = _workspace_api().Workspace.create(root, inputs["a"], inputs["b"], target, **kw)
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
        shutil.rmtree(entry.path, ignore_errors=True)
        return Entry(entry.name, new_root)

    def _busy_check(self, name: str) -> None:
        job = self.jobs.active_for(name)
        if job is not None:
            raise HTTPError(409, f"a job is {job.state} on this workspace; stop it or wait for it first")

    def _job_outcome(self, job: Job) -> JobState:
        """Outcome of a job that ended while no server watched: from the workspace's stage states."""
        ws = _workspace_api().Workspace.open(Path(job.root))
        status = ws.status()
        stages = job.stages or list(STAGE_NAMES)
        states = [getattr(status.get(s), "state", None) for s in stages]
        if any(s == "failed" for s in states):
            return "failed"
        if all(s == "done" for s in states):
            return "done"
        return "stopped"

    def _consent(self, root: Path) -> dict[str, Any] | None:
        data = _read_json(root / CONSENT_FILE)
        return data if isinstance(data, dict) and data.get("agreed") is True else None

    # ---- pages ------------------------------------------------------------------------------------------
    def page_index(self, req: Request, groups: list[str]) -> Response:
        return Response(file=STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    def static_file(self, req: Request, groups: list[str]) -> Response:
        name = groups[0]
        known = {p.name for p in STATIC_DIR.iterdir() if p.is_file()}
        if name not in known:  # a fixed listing: no path from the request is ever joined
            raise HTTPError(404, "not found")
        return Response(file=STATIC_DIR / name, headers={"Cache-Control": "no-cache"})

    # ---- API: global ------------------------------------------------------------------------------------
    def api_info(self, req: Request, groups: list[str]) -> Response:
        return json_response(
            {
                "version": __version__,
                "workspaces": str(self.config.workspaces),
                "allowed": [{"index": i, "path": str(p)} for i, p in enumerate(self.config.allowed)],
                "max_upload_mb": self.config.max_upload_mb,
                "max_training_jobs": self.config.max_training_jobs,
                "consent_text": CONSENT_TEXT,
                "stages": list(STAGE_NAMES),
                "media_suffixes": sorted(security.MEDIA_SUFFIXES),
            }
        )

    def api_workspaces(self, req: Request, groups: list[str]) -> Response:
        out = []
        for name, entry in self.registry.all().items():
            item: dict[str, Any] = {"name": name, "path": str(entry.path), "draft": entry.draft}
            if entry.draft:
                item["stages"] = {s: {"state": "pending"} for s in STAGE_NAMES}
            else:
                try:
                    ws = _workspace_api().Workspace.open(entry.path)
                    item["stages"] = {k: _stage_json(v) for k, v in ws.status().items()}
                except Exception as exc:  # one broken workspace must not hide the others
                    item["error"] = str(exc)
            job = self.jobs.latest_for(name)
            item["job"] = job.to_json() if job else None
            out.append(item)
        return json_response({"workspaces": out})

    def api_create(self, req: Request, groups: list[str]) -> Response:
        """A new workspace: ``{"name", "model", "iterations", "minutes"}``.

        It is a draft until A and B both have inputs."""
        body = req.json()
        name = str(body.get("name", "")).strip()
        try:
            security.check_name(name, "workspace name")
        except Forbidden as exc:
            raise HTTPError(400, str(exc)) from exc
        data: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        model = body.get("model")
        if model:
            if model not in MODELS:
                raise HTTPError(400, f"model must be one of {', '.join(MODELS)}")
            data["model"] = model
        for key, typ in (("iterations", int), ("minutes", float)):
            if body.get(key) not in (None, ""):
                try:
                    value = typ(body[key])
                except (TypeError, ValueError) as exc:
                    raise HTTPError(400, f"{key} must be a number") from exc
                if value <= 0:
                    raise HTTPError(400, f"{key} must be positive")
                data[key] = value
        try:
            _workspace_api().normalize_section("train", {k: v for k, v in data.items() if k != "created"})
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        with self.registry.lock:
            if self.registry.taken(name):
                raise HTTPError(409, f"workspace {name!r} exists already")
            folder = ensure_dir(self.registry.drafts / name)
            data["inputs"] = {role: [] for role in ROLES}
            atomic_write_text(folder / DRAFT_FILE, json.dumps(data, indent=1))
        return json_response({"name": name, "draft": True}, 201)

    def api_open(self, req: Request, groups: list[str]) -> Response:
        body = req.json()
        try:
            path = security.confine(
                Path(str(body.get("path", ""))), [self.config.workspaces, *self.config.allowed]
            )
        except Forbidden as exc:
            raise HTTPError(403, str(exc)) from exc
        if not _workspace_api().Workspace.is_workspace(path):
            raise HTTPError(400, f"{path} is not a faceloom workspace")
        return json_response({"name": self.registry.open(path), "path": str(path)})

    def api_browse(self, req: Request, groups: list[str]) -> Response:
        """Folders and media files inside an allowed folder (``root`` = its index, ``path`` relative)."""
        try:
            index = int(req.query.get("root", "0"))
            if index < 0:
                raise IndexError(index)
            base = self.config.allowed[index]
        except (ValueError, IndexError) as exc:
            raise HTTPError(404, "no such allowed folder") from exc
        rel = req.query.get("path", "")
        try:
            folder = security.confine_relative(base, rel) if rel else base
        except Forbidden as exc:
            raise HTTPError(403, str(exc)) from exc
        if not folder.is_dir():
            raise HTTPError(404, "no such folder")
        dirs, files = [], []
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            try:
                resolved = p.resolve()
            except OSError:
                continue
            if not security.is_inside(resolved, base):
                continue  # a symlink out of the allowed folder is not shown (nor accepted)
            if resolved.is_dir():
                dirs.append(p.name)
            elif resolved.is_file() and security.is_media_name(p.name):
                files.append({"name": p.name, "path": str(p), "size": resolved.stat().st_size})
        return json_response(
            {
                "root": index,
                "base": str(base),
                "path": folder.relative_to(base).as_posix() if folder != base else "",
                "dirs": dirs,
                "files": files,
            }
        )

    def api_jobs(self, req: Request, groups: list[str]) -> Response:
        self.jobs.tick()
        return json_response({"jobs": [j.to_json() for j in self.jobs.jobs()]})

    def _job(self, job_id: str) -> Job:
        try:
            return self.jobs.get(job_id)
        except JobError as exc:
            raise HTTPError(404, str(exc)) from exc

    def api_job_log(self, req: Request, groups: list[str]) -> Response:
        job = self._job(groups[0])
        return json_response({"job": job.to_json(), "log": log_tail(Path(job.log))})

    def api_job_stop(self, req: Request, groups: list[str]) -> Response:
        self._job(groups[0])
        try:
            return json_response({"job": self.jobs.stop(groups[0]).to_json()})
        except JobError as exc:
            raise HTTPError(409, str(exc)) from exc

    def api_job_resume(self, req: Request, groups: list[str]) -> Response:
        self._job(groups[0])
        try:
            return json_response({"job": self.jobs.resume(groups[0]).to_json()})
        except JobError as exc:
            raise HTTPError(409, str(exc)) from exc

    # ---- API: one workspace --------------------------------------------------------------------------------
    def api_ws(self, req: Request, groups: list[str]) -> Response:
        name = groups[0]
        entry = self.registry.get(name)
        if entry.draft:
            return json_response(self._draft_json(entry))
        ws, root = self._open_ws(name)
        try:
            status = {k: _stage_json(v) for k, v in ws.status().items()}
        except FaceloomError as exc:
            status = {}
            status_error: str | None = str(exc)
        else:
            status_error = None
        facesets: dict[str, Any] = {}
        for role, attr in (("a", "faceset_a"), ("b", "faceset_b"), ("target", "faceset_target")):
            facesets[role] = self._faceset_summary(getattr(ws, attr, None))
        model_dir = Path(ws.model_dir)
        preview = model_dir / "previews" / "latest.png"
        outputs: dict[str, Any] = {}
        for kind, attr in (("output", "output_video"), ("side_by_side", "side_by_side_video")):
            p = getattr(ws, attr, None)
            rel = _rel_to(Path(p), root) if p else None
            outputs[kind] = {"exists": rel is not None, "path": rel}
        analysis = Path(ws.analysis_dir)
        coverage = _read_json(analysis / "coverage.json")
        job = self.jobs.latest_for(name)
        last_step = None
        rows = _loss_log(model_dir)["rows"]
        if rows:
            last_step = rows[-1][0]
        settings = ws.settings if isinstance(ws.settings, dict) else {}
        train = settings.get("train", {})
        return json_response(
            {
                "name": name,
                "path": str(root),
                "draft": False,
                "train_target": train.get("iterations") if isinstance(train, dict) else None,
                "stages": status,
                "status_error": status_error,
                "inputs": _inputs_of(ws),
                "settings": {k: v for k, v in settings.items() if isinstance(v, dict) and k in STAGE_NAMES},
                "facesets": facesets,
                "preview": _rel_to(preview, root),
                "preview_mtime": preview.stat().st_mtime if preview.is_file() else None,
                "train_step": last_step,
                "coverage": _coverage_summary(coverage),
                "report": _rel_to(analysis / "report.html", root),
                "eval": _read_json(Path(ws.eval_json)) if getattr(ws, "eval_json", None) else None,
                "outputs": outputs,
                "consent": self._consent(root),
                "job": job.to_json() if job else None,
            }
        )

    def _draft_json(self, entry: Entry) -> dict[str, Any]:
        data = self._draft(entry)
        job = self.jobs.latest_for(entry.name)
        return {
            "name": entry.name,
            "path": str(entry.path),
            "draft": True,
            "train_target": data.get("iterations"),
            "stages": {s: {"state": "pending"} for s in STAGE_NAMES},
            "status_error": None,
            "inputs": data["inputs"],
            "settings": {},
            "facesets": {role: {"exists": False, "faces": 0} for role in ROLES},
            "preview": None,
            "preview_mtime": None,
            "train_step": None,
            "coverage": None,
            "report": None,
            "eval": None,
            "outputs": {k: {"exists": False, "path": None} for k in ("output", "side_by_side")},
            "consent": self._consent(entry.path),
            "job": job.to_json() if job else None,
        }

    def _faceset_summary(self, path: Any) -> dict[str, Any]:
        from faceloom.faces.faceset import Faceset

        if not path or not Faceset.is_faceset(Path(path)):
            return {"exists": False, "faces": 0}
        header = _read_json(Path(path) / "faceset.json") or {}
        return {"exists": True, "faces": int(header.get("faces", 0) or 0)}

    def api_inputs(self, req: Request, groups: list[str]) -> Response:
        """Change a role's inputs: ``{"role": "a", "paths": [...], "mode": "add"|"replace"|"remove"}``.

        Each path must be a media file or a folder inside an allowed folder or the workspace itself.
        """
        name = groups[0]
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
        return _inputs_of(ws)

    def _store_inputs(self, entry: Entry, role: str, paths: list[str]) -> Entry:
        """Save a role's inputs (a draft becomes a workspace once A and B have some)."""
        if role == "target" and len(paths) > 1:
            raise HTTPError(400, "the target is one video")
        if entry.draft:
            data = self._draft(entry)
            data["inputs"][role] = paths
            self._save_draft(entry, data)
            return self._finalize(entry, data)
        ws, _ = self._open_ws(entry.name)
        try:
            if role == "target":
                ws.set_inputs(target=paths[0] if paths else "")
            else:
                ws.set_inputs(**{role: paths})
        except FaceloomError as exc:
            raise HTTPError(400, str(exc)) from exc
        return entry

    def api_upload(self, req: Request, groups: list[str]) -> Response:
        """Raw file body; ``?role=a|b|target&name=FILE``. Streamed to ``inputs/ROLE/`` with a size cap."""
        name = groups[0]
        entry = self.registry.get(name)
        self._busy_check(name)
        role = req.query.get("role", "")
        if role not in ROLES:
            raise HTTPError(400, f"role must be one of {', '.join(ROLES)}")
        filename = security.safe_filename(req.query.get("name", ""))
        if not security.is_media_name(filename):
            raise HTTPError(
                415,
                f"{req.query.get('name', '')!r} is not a video or image file "
                f"(accepted: {', '.join(sorted(security.MEDIA_SUFFIXES))})",
            )
        if role == "target" and Path(filename).suffix.lower() not in VIDEO_SUFFIXES:
            raise HTTPError(415, f"{filename}: the target must be a video")
        if req.length is None:
            raise HTTPError(411, "the upload needs a Content-Length")
        limit = int(self.config.max_upload_mb * 1024 * 1024)
        if req.length > limit:
            raise HTTPError(413, f"file too large: the limit is {self.config.max_upload_mb:g} MB")
        folder = ensure_dir(entry.path / UPLOAD_DIR / role)
        tmp = folder / f".upload-{secrets.token_hex(6)}.part{Path(filename).suffix}"
        try:
            remaining = req.length
            with open(tmp, "wb") as fh:
                while remaining > 0:
                    chunk = req.rfile.read(min(CHUNK, remaining))
                    if not chunk:
                        raise HTTPError(400, "upload broke off before its end")
                    fh.write(chunk)
                    remaining -= len(chunk)
            req.length = 0
            _check_media(tmp, filename)
            with self.registry.lock:
                final = _unique(folder / filename)
                os.replace(tmp, final)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        with self.registry.lock:
            current = self._current_inputs(entry)[role]
            paths = [str(final)] if role == "target" else [*current, str(final)]
            entry = self._store_inputs(entry, role, paths)
        if not entry.draft:
            final = entry.path / UPLOAD_DIR / role / final.name
        return json_response(
            {"path": str(final), "name": final.name, "role": role, "draft": entry.draft}, 201
        )

    def _faceset(self, ws: Any, role: str) -> Any:
        from faceloom.faces.faceset import Faceset

        if role not in ROLES:
            raise HTTPError(400, f"role must be one of {', '.join(ROLES)}")
        attr = {"a": "faceset_a", "b": "faceset_b", "target": "faceset_target"}[role]
        path = getattr(ws, attr, None)
        if not path or not Faceset.is_faceset(Path(path)):
            raise HTTPError(404, f"no faces of {role} yet: run extract first")
        try:
            return Faceset.load(Path(path))
        except FaceloomError as exc:
            raise HTTPError(409, str(exc)) from exc

    def api_faces(self, req: Request, groups: list[str]) -> Response:
        from faceloom.faceset_tools import short_id

        name, role = groups
        ws, root = self._open_ws(name)
        fs = self._faceset(ws, role)
        try:
            offset = max(0, int(req.query.get("offset", "0")))
            limit = min(1000, max(1, int(req.query.get("limit", str(FACES_PAGE)))))
        except ValueError as exc:
            raise HTTPError(400, "offset and limit must be numbers") from exc
        faces = []
        for r in fs.records[offset : offset + limit]:
            rel = _rel_to(fs.image_path(r), root)
            faces.append(
                {
                    "id": r.id,
                    "short": short_id(r),
                    "url": f"/files/ws/{name}/{urllib.parse.quote(rel)}" if rel else None,
                    "blur": round(float(r.blur), 1),
                    "yaw": round(float(getattr(r, "yaw", 0.0) or 0.0), 1),
                }
            )
        return json_response({"role": role, "total": len(fs.records), "offset": offset, "faces": faces})

    def api_faces_remove(self, req: Request, groups: list[str]) -> Response:
        from faceloom.faceset_tools import remove_faces

        name, role = groups
        ws, _ = self._open_ws(name)
        self._busy_check(name)
        fs = self._faceset(ws, role)
        ids = req.json().get("ids", [])
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise HTTPError(400, "ids must be a non-empty list of face ids")
        try:
            removed = remove_faces(fs, ids=ids)
        except FaceloomError as exc:
            raise HTTPError(400, str(exc)) from exc
        return json_response({"removed": [r.id for r in removed], "remaining": len(fs.records)})

    def api_settings(self, req: Request, groups: list[str]) -> Response:
        """Change scalar settings that exist already: ``{"train": {"iterations": 20}, ...}``.

        Paths cannot be set here (inputs go through ``inputs``/``upload``, which confine them).
        """
        name = groups[0]
        ws, root = self._open_ws(name)
        self._busy_check(name)
        body = req.json()
        settings = ws.settings if isinstance(ws.settings, dict) else {}
        changes: dict[str, dict[str, Any]] = {}
        for section, values in body.items():
            if (
                section not in STAGE_NAMES
                or not isinstance(values, dict)
                or not isinstance(settings.get(section), dict)
            ):
                raise HTTPError(400, f"unknown settings section {section!r}")
            for key, value in values.items():
                if any(w in key.lower() for w in _PATHLIKE_KEYS):
                    raise HTTPError(403, f"{section}.{key} cannot be changed from the UI")
                if key not in settings[section] and key not in ("iterations", "minutes"):
                    raise HTTPError(400, f"unknown setting {section}.{key}")
                changes.setdefault(section, {})[key] = _setting_value(section, key, value)
        try:
            for section, values in changes.items():
                ws.update_settings(section, values)
        except (FaceloomError, ValueError, TypeError) as exc:
            raise HTTPError(400, str(exc)) from exc
        fresh = _workspace_api().Workspace.open(root).settings
        return json_response(
            {"settings": {k: v for k, v in fresh.items() if isinstance(v, dict) and k in STAGE_NAMES}}
        )

    def api_consent(self, req: Request, groups: list[str]) -> Response:
        root = self.registry.get(groups[0]).path
        body = req.json()
        if body.get("agree") is not True:
            raise HTTPError(400, 'consent is given with {"agree": true}')
        data = {"agreed": True, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "text": CONSENT_TEXT}
        atomic_write_text(root / CONSENT_FILE, json.dumps(data, indent=1))
        return json_response({"consent": data})

    def api_run(self, req: Request, groups: list[str]) -> Response:
        """Start ``faceloom run``: ``{"stages": [...], "iterations": N, "minutes": M}``.

        No stages means the whole chain."""
        name = groups[0]
        _, root = self._open_ws(name)
        body = req.json()
        stages = body.get("stages") or []
        if not isinstance(stages, list) or not all(s in STAGE_NAMES for s in stages):
            raise HTTPError(400, f"stages must be a list of {', '.join(STAGE_NAMES)}")
        stages = [s for s in STAGE_NAMES if s in stages]  # chain order, no duplicates
        if (not stages or "convert" in stages) and self._consent(root) is None:
            raise HTTPError(
                409,
                "confirm the consent rule before the first swap",
                consent_required=True,
                consent_text=CONSENT_TEXT,
            )
        args: list[str] = []
        for key, typ in (("iterations", int), ("minutes", float)):
            v = body.get(key)
            if v in (None, ""):
                continue
            try:
                num = typ(v)
            except (TypeError, ValueError) as exc:
                raise HTTPError(400, f"{key} must be a number") from exc
            if num <= 0:
                raise HTTPError(400, f"{key} must be positive")
            args += [f"--{key}", str(num)]
        try:
            job = self.jobs.submit(name, root, stages, args)
        except JobError as exc:
            raise HTTPError(409, str(exc)) from exc
        return json_response({"job": job.to_json()}, 202)

    def api_trainlog(self, req: Request, groups: list[str]) -> Response:
        ws, _ = self._open_ws(groups[0])
        return json_response(_loss_log(Path(ws.model_dir)))

    def api_video(self, req: Request, groups: list[str]) -> Response:
        """A browser copy (H.264/AAC) of an output video; builds it on first request."""
        from faceloom.ui.media import browser_preview, plays_in_browser

        name, kind = groups
        ws, root = self._open_ws(name)
        attr = {"output": "output_video", "side_by_side": "side_by_side_video"}.get(kind)
        if attr is None:
            raise HTTPError(404, "no such video kind")
        src = getattr(ws, attr, None)
        rel = _rel_to(Path(src), root) if src else None
        if rel is None:
            raise HTTPError(404, f"no {kind.replace('_', '-')} video yet: run convert first")
        src_path = root / rel
        if plays_in_browser(src_path):
            play_rel = rel
        else:
            try:
                preview = browser_preview(src_path, root / PREVIEW_DIR / f"{kind}.mp4")
            except FaceloomError as exc:
                raise HTTPError(500, str(exc)) from exc
            play_rel = preview.relative_to(root).as_posix()
        stamp = int(src_path.stat().st_mtime)
        base = f"/files/ws/{name}/"
        return json_response(
            {
                "url": f"{base}{urllib.parse.quote(play_rel)}?v={stamp}",
                "download": f"{base}{urllib.parse.quote(rel)}?download=1",
                "name": Path(rel).name,
            }
        )

    # ---- files -------------------------------------------------------------------------------------------
    def ws_file(self, req: Request, groups: list[str]) -> Response:
        name, rel = groups
        root = self.registry.get(name).path
        try:
            path = security.confine_relative(root, rel)
        except Forbidden as exc:
            raise HTTPError(403, str(exc)) from exc
        if not path.is_file():
            raise HTTPError(404, "not found")
        headers = {
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; "
            "media-src 'self'; style-src 'unsafe-inline'",
            "Cache-Control": "no-cache",
        }
        download = path.name if req.query.get("download") else None
        return Response(file=path, headers=headers, download_name=download)


def _coverage_summary(data: Any) -> dict[str, Any] | None:
    """The part of coverage.json the page shows: warnings, advice not already in them, uncovered share."""
    if not isinstance(data, dict):
        return None
    warnings = [
        str(w.get("message", json.dumps(w))) if isinstance(w, dict) else str(w)
        for w in data.get("warnings", [])
    ]
    advice = [str(a) for a in data.get("advice", []) if str(a) not in warnings]
    uncovered = data.get("uncovered") if isinstance(data.get("uncovered"), dict) else {}
    return {"warnings": warnings, "advice": advice, "uncovered": uncovered}


def _setting_value(section: str, key: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _SETTING_VALUE.fullmatch(value) and ".." not in value:
        return value
    raise HTTPError(400, f"{section}.{key}: only numbers, true/false and short words can be set here")


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


# ---- HTTP plumbing --------------------------------------------------------------------------------
def _split_path(raw_path: str) -> list[str]:
    """Decode a URL path into segments; a segment that decodes to a separator or '..' is refused."""
    segments = []
    for part in raw_path.split("/"):
        if part == "":
            continue
        seg = urllib.parse.unquote(part, errors="strict")
        if seg in (".", "..") or "/" in seg or "\\" in seg or "\x00" in seg:
            raise Forbidden("bad path segment")
        segments.append(seg)
    return segments


def _ranges(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range as (start, end inclusive); None when absent or not one range."""
    if not header:
        return None
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        start, end = max(0, size - int(m.group(2))), size - 1
    end = min(end, size - 1)
    if start > end:
        raise HTTPError(416, "range not satisfiable", content_range=f"bytes */{size}")
    return start, end


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"
    server_version = "faceloom-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # library code never prints
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- access checks ------------------------------------------------------------------------------------
    def _given_token(self, query: dict[str, str]) -> str | None:
        header = self.headers.get(security.TOKEN_HEADER)
        if header:
            return header
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if "token" in query:
            return query["token"]
        for part in self.headers.get("Cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == security.TOKEN_COOKIE:
                return v
        return None

    def _check_host(self) -> None:
        config = self.server.app.config
        if not security.is_loopback(config.host):
            return
        host = self.headers.get("Host", "")
        hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
        if not security.is_loopback(hostname):
            raise HTTPError(403, "this UI answers only to a loopback host name (127.0.0.1 or localhost)")

    def _check_write(self, method: str) -> None:
        if method in ("GET", "HEAD"):
            return
        if self.headers.get("X-Faceloom") != "1":
            raise HTTPError(403, "missing X-Faceloom header (requests that change things come from the page)")
        origin = self.headers.get("Origin")
        if origin and origin != "null":
            o = urllib.parse.urlsplit(origin)
            if o.netloc != self.headers.get("Host", ""):
                raise HTTPError(403, "cross-origin request refused")

    # ---- dispatch --------------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        length_header = self.headers.get("Content-Length")
        length: int | None = None
        if length_header is not None:
            try:
                length = int(length_header)
            except ValueError:
                length = None
            if length is not None and length < 0:
                length = None
        if self.headers.get("Transfer-Encoding"):
            length = None
        req: Request | None = None
        set_cookie: str | None = None
        try:
            split = urllib.parse.urlsplit(self.path)
            try:
                segments = _split_path(split.path)
            except (Forbidden, UnicodeDecodeError) as exc:
                raise HTTPError(403, "path refused") from exc
            query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
            self._check_host()
            expected = self.server.app.config.token
            given = self._given_token(query)
            if not security.token_ok(expected, given):
                raise HTTPError(401, "access token required: open the URL that `faceloom ui` printed")
            if expected and "token" in query:
                set_cookie = f"{security.TOKEN_COOKIE}={expected}; Path=/; HttpOnly; SameSite=Strict"
                if method == "GET" and not segments:
                    self._send(Response(303, headers={"Location": "/"}), method, set_cookie)
                    return
            self._check_write(method)
            req = Request(
                method if method != "HEAD" else "GET",
                split.path,
                segments,
                query,
                self.headers,
                self.rfile,
                length,
            )
            response = self.server.app.dispatch(req)
        except HTTPError as exc:
            response = json_response({"error": exc.message, **exc.extra}, exc.status)
            if "content_range" in exc.extra:
                response.headers["Content-Range"] = exc.extra["content_range"]
        except Forbidden as exc:
            response = json_response({"error": str(exc)}, 403)
        except FaceloomError as exc:
            response = json_response({"error": str(exc)}, 400)
        except Exception as exc:  # a bug: answer 500 rather than drop the connection
            response = json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        unread = length if req is None else req.length
        if unread:
            # The body was not read (refused early): do not try to parse it as the next request.
            self.close_connection = True
            response.headers["Connection"] = "close"
        elif length is None and method in ("POST", "PUT") and self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            response.headers["Connection"] = "close"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(response, method, set_cookie)

    def _send(self, response: Response, method: str, set_cookie: str | None = None) -> None:
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "SAMEORIGIN",
            **response.headers,
        }
        if set_cookie:
            headers["Set-Cookie"] = set_cookie
        if response.file is not None:
            self._send_file(response, headers, method)
            return
        self.send_response(response.status)
        headers["Content-Length"] = str(len(response.body))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def _send_file(self, response: Response, headers: dict[str, str], method: str) -> None:
        path = response.file
        assert path is not None
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            body = json.dumps({"error": "not found"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
            return
        with fh:
            st = os.fstat(fh.fileno())
            size = st.st_size
            try:
                rng = _ranges(self.headers.get("Range"), size)
            except HTTPError as exc:
                self.send_response(exc.status)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.OK
            start, end = 0, size - 1
            if rng is not None:
                status = HTTPStatus.PARTIAL_CONTENT
                start, end = rng
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers.setdefault("Content-Type", content_type(path))
            headers["Accept-Ranges"] = "bytes"
            headers["Last-Modified"] = email.utils.formatdate(st.st_mtime, usegmt=True)
            headers["Content-Length"] = str(max(0, end - start + 1))
            if response.download_name:
                quoted = urllib.parse.quote(response.download_name)
                headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quoted}"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if method == "HEAD":
                return
            fh.seek(start)
            remaining = end - start + 1
            for chunk in _chunks(fh, remaining):
                self.wfile.write(chunk)


def _chunks(fh: BinaryIO, remaining: int) -> Iterator[bytes]:
    while remaining > 0:
        chunk = fh.read(min(CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


class UIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: UIApp) -> None:
        self.app = app
        host = app.config.host
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), app.config.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        if shown in ("0.0.0.0", "[::]"):
            shown = "127.0.0.1"
        return f"http://{shown}:{port}/"


def make_server(config: UIConfig, jobs: JobManager | None = None) -> UIServer:
    """A ready server (bound, not yet serving); its job watcher is started."""
    app = UIApp(config, jobs)
    server = UIServer(app)
    app.jobs.start()
    return server


@contextlib.contextmanager
def running_server(config: UIConfig, jobs: JobManager | None = None) -> Iterator[UIServer]:
    """A server answering in a background thread for the ``with`` block (tests, benchmarks)."""
    server = make_server(config, jobs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.app.jobs.close()
        thread.join(timeout=5)


__all__ = [
    "CONSENT_TEXT",
    "FINISHED",
    "UIApp",
    "UIConfig",
    "UIServer",
    "make_server",
    "running_server",
]
