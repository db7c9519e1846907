"""The web UI's application: routes on Starlette, behind :class:`faceloom.ui.security.Guard`.

No logic of its own: workspaces are :class:`faceloom.workspace.Workspace`, face removal is
:func:`faceloom.faces.faceset_edit.remove_faces`, and every stage runs as ``faceloom run`` in a job
process (:mod:`faceloom.ui.jobs`). The page (``static/``) is plain HTML and JavaScript that polls the
JSON API about once a second. The routes of one workspace are in :mod:`faceloom.ui.workspace_routes`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from faceloom import __version__
from faceloom.config.choices import MODEL_NAMES
from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_text, ensure_dir
from faceloom.ui import security
from faceloom.ui.config import UIConfig
from faceloom.ui.http import HTTPError, Req, endpoint, error_response, file_response, json_response
from faceloom.ui.jobs import Job, JobError, JobManager, JobState, log_tail
from faceloom.ui.live_socket import LiveRoutes
from faceloom.ui.registry import DRAFT_FILE, Registry
from faceloom.ui.security import Forbidden, Guard
from faceloom.ui.settings_schema import settings_schema
from faceloom.ui.workspace_routes import (
    CONSENT_TEXT,
    ROLES,
    WorkspaceRoutes,
    stage_json,
)
from faceloom.workspace.stages import STAGE_NAMES
from faceloom.workspace.workspace import Workspace

STATIC_DIR = Path(__file__).with_name("static")


class UIApp(WorkspaceRoutes, LiveRoutes):
    """The UI's state (config, known workspaces, jobs) and its handlers; one per server."""

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
        self._info: bytes | None = None

    def _job_outcome(self, job: Job) -> JobState:
        """Outcome of a job that ended while no server watched: from the workspace's stage states."""
        status = Workspace.open(Path(job.root)).status()
        states = [getattr(status.get(s), "state", None) for s in job.stages or STAGE_NAMES]
        if any(s == "failed" for s in states):
            return "failed"
        if all(s == "done" for s in states):
            return "done"
        return "stopped"

    def routes(self) -> list[BaseRoute]:
        get, post = ["GET", "HEAD"], ["POST"]
        return [
            Route("/", endpoint(self.page_index), methods=get),
            Route("/static/{name}", endpoint(self.static_file), methods=get),
            Route("/api/info", self.api_info, methods=get),
            Route("/api/workspaces", endpoint(self.api_workspaces), methods=get),
            Route("/api/workspaces", endpoint(self.api_create), methods=post),
            Route("/api/workspaces/open", endpoint(self.api_open), methods=post),
            Route("/api/browse", endpoint(self.api_browse), methods=get),
            Route("/api/jobs", endpoint(self.api_jobs), methods=get),
            Route("/api/jobs/{job_id}/log", endpoint(self.api_job_log), methods=get),
            Route("/api/jobs/{job_id}/stop", endpoint(self.api_job_stop), methods=post),
            Route("/api/jobs/{job_id}/resume", endpoint(self.api_job_resume), methods=post),
            *self.workspace_routes(),
            *self.live_routes(),
        ]

    # ---- pages ------------------------------------------------------------------------------------
    def page_index(self, req: Req) -> Response:
        return file_response(STATIC_DIR / "index.html", {"Cache-Control": "no-store"})

    def static_file(self, req: Req) -> Response:
        name = req.params["name"]
        known = {p.name for p in STATIC_DIR.iterdir() if p.is_file()}
        if name not in known:  # a fixed listing: no path from the request is ever joined
            raise HTTPError(404, "not found")
        return file_response(STATIC_DIR / name, {"Cache-Control": "no-cache"})

    # ---- API: global ------------------------------------------------------------------------------
    async def api_info(self, request: Request) -> Response:
        """Answered on the event loop from bytes made once: the page and its pollers ask often."""
        if self._info is None:
            self._info = json.dumps(self._info_data(), default=str).encode()
        return Response(self._info, headers={"Cache-Control": "no-store"}, media_type="application/json")

    def _info_data(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "workspaces": str(self.config.workspaces),
            "allowed": [{"index": i, "path": str(p)} for i, p in enumerate(self.config.allowed)],
            "max_upload_mb": self.config.max_upload_mb,
            "max_training_jobs": self.config.max_training_jobs,
            "consent_text": CONSENT_TEXT,
            "stages": list(STAGE_NAMES),
            "models": list(MODEL_NAMES),
            "settings": settings_schema(),
            "media_suffixes": sorted(security.MEDIA_SUFFIXES),
        }

    def api_workspaces(self, req: Req) -> Response:
        out = []
        for name, entry in self.registry.all().items():
            item: dict[str, Any] = {"name": name, "path": str(entry.path), "draft": entry.draft}
            if entry.draft:
                item["stages"] = {s: {"state": "pending"} for s in STAGE_NAMES}
            else:
                try:
                    ws = Workspace.open(entry.path)
                    item["stages"] = {k: stage_json(v) for k, v in ws.status().items()}
                except Exception as exc:  # one broken workspace must not hide the others
                    item["error"] = str(exc)
            job = self.jobs.latest_for(name)
            item["job"] = job.to_json() if job else None
            out.append(item)
        return json_response({"workspaces": out})

    def api_create(self, req: Req) -> Response:
        """A new workspace: ``{"name", "model", "iterations", "minutes"}``; a draft until A and B
        both have inputs."""
        from faceloom.workspace.settings_file import normalize_section

        body = req.json()
        name = str(body.get("name", "")).strip()
        try:
            security.check_name(name, "workspace name")
        except Forbidden as exc:
            raise HTTPError(400, str(exc)) from exc
        data: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        train = {k: body[k] for k in ("model", "iterations", "minutes") if body.get(k) not in (None, "")}
        try:
            normalize_section("train", train)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        data.update(train)
        with self.registry.lock:
            if self.registry.taken(name):
                raise HTTPError(409, f"workspace {name!r} exists already")
            folder = ensure_dir(self.registry.drafts / name)
            data["inputs"] = {role: [] for role in ROLES}
            atomic_write_text(folder / DRAFT_FILE, json.dumps(data, indent=1))
        return json_response({"name": name, "draft": True}, 201)

    def api_open(self, req: Req) -> Response:
        body = req.json()
        try:
            path = security.confine(
                Path(str(body.get("path", ""))), [self.config.workspaces, *self.config.allowed]
            )
        except Forbidden as exc:
            raise HTTPError(403, str(exc)) from exc
        if not Workspace.is_workspace(path):
            raise HTTPError(400, f"{path} is not a faceloom workspace")
        return json_response({"name": self.registry.open(path), "path": str(path)})

    def api_browse(self, req: Req) -> Response:
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

    def api_jobs(self, req: Req) -> Response:
        self.jobs.tick()
        return json_response({"jobs": [j.to_json() for j in self.jobs.jobs()]})

    def _job(self, job_id: str) -> Job:
        try:
            return self.jobs.get(job_id)
        except JobError as exc:
            raise HTTPError(404, str(exc)) from exc

    def api_job_log(self, req: Req) -> Response:
        job = self._job(req.params["job_id"])
        return json_response({"job": job.to_json(), "log": log_tail(Path(job.log))})

    def api_job_stop(self, req: Req) -> Response:
        job_id = req.params["job_id"]
        self._job(job_id)
        try:
            return json_response({"job": self.jobs.stop(job_id).to_json()})
        except JobError as exc:
            raise HTTPError(409, str(exc)) from exc

    def api_job_resume(self, req: Req) -> Response:
        job_id = req.params["job_id"]
        self._job(job_id)
        try:
            return json_response({"job": self.jobs.resume(job_id).to_json()})
        except JobError as exc:
            raise HTTPError(409, str(exc)) from exc


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Routing's 404 and 405 in the API's one error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(405, "method not allowed here")
    return error_response(exc.status_code, str(exc.detail) if exc.status_code != 404 else "not found")


def create_app(ui: UIApp) -> Starlette:
    """The ASGI application of ``ui``: its routes behind the access guard."""
    app = Starlette(routes=ui.routes(), exception_handlers={HTTPException: _http_exception})
    app.state.ui = ui
    return app


def guarded(ui: UIApp) -> Guard:
    return Guard(create_app(ui), ui.config)


__all__ = ["CONSENT_TEXT", "FaceloomError", "UIApp", "UIConfig", "create_app", "guarded"]
