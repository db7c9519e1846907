"""The UI's routes of one workspace: its state, inputs and uploads, faces, settings, consent, runs,
training log, result videos and files. Mixed into :class:`faceloom.ui.app.UIApp`."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import Route

from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_text, kept_aside
from faceloom.ui import security
from faceloom.ui.http import SANDBOX_CSP, HTTPError, Req, endpoint, file_response, json_response
from faceloom.ui.input_routes import CONSENT_FILE, ROLES, UI_PRESET, InputRoutes, consent_of, inputs_of
from faceloom.ui.registry import DRAFT_FILE, Entry, Registry
from faceloom.ui.security import Forbidden
from faceloom.ui.settings_schema import editable
from faceloom.workspace.stages import STAGE_NAMES
from faceloom.workspace.workspace import Workspace

if TYPE_CHECKING:
    from faceloom.ui.config import UIConfig
    from faceloom.ui.jobs import JobManager

PREVIEW_DIR = "ui-preview"
CONSENT_TEXT = (
    "I have the consent of everyone whose face I swap. Putting someone's face into a video without "
    "their consent can harm them and is unlawful in many places. Every output is labelled as synthetic."
)
CHUNK = 1 << 20
FACES_PAGE = 240
_SETTING_VALUE = re.compile(r"^[A-Za-z0-9_+.-]{0,40}$")


def stage_json(st: Any) -> dict[str, Any]:
    return {
        "state": getattr(st, "state", None),
        "seconds": getattr(st, "seconds", None),
        "error": getattr(st, "error", None),
        "finished": getattr(st, "finished", None),
    }


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
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return value
    if isinstance(value, str) and _SETTING_VALUE.fullmatch(value) and ".." not in value:
        return value
    raise HTTPError(400, f"{section}.{key}: only numbers, true/false and short words can be set here")


class WorkspaceRoutes(InputRoutes):
    """Handlers of one workspace's routes; the app provides its config, registry and jobs."""

    config: UIConfig
    registry: Registry
    jobs: JobManager

    def workspace_routes(self) -> list[Route]:
        get, post = ["GET", "HEAD"], ["POST"]
        return [
            *self.input_routes(),
            Route("/api/ws/{name}", endpoint(self.api_ws), methods=get),
            Route("/api/ws/{name}/faces/{role}", endpoint(self.api_faces), methods=get),
            Route("/api/ws/{name}/faces/{role}/remove", endpoint(self.api_faces_remove), methods=post),
            Route("/api/ws/{name}/settings", endpoint(self.api_settings), methods=post),
            Route("/api/ws/{name}/consent", endpoint(self.api_consent), methods=post),
            Route("/api/ws/{name}/run", endpoint(self.api_run), methods=post),
            Route("/api/ws/{name}/trainlog", endpoint(self.api_trainlog), methods=get),
            Route("/api/ws/{name}/video/{kind}", endpoint(self.api_video), methods=get),
            Route("/files/ws/{name}/{rel:path}", endpoint(self.ws_file), methods=get),
        ]

    # ---- helpers ------------------------------------------------------------------------------
    def _open_ws(self, name: str) -> tuple[Workspace, Path]:
        entry = self.registry.get(name)
        if entry.draft:
            raise HTTPError(409, "add inputs for A and B first: the workspace is made when both have one")
        try:
            return Workspace.open(entry.path), entry.path
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

    def _busy_check(self, name: str) -> None:
        job = self.jobs.active_for(name)
        if job is not None:
            raise HTTPError(409, f"a job is {job.state} on this workspace; stop it or wait for it first")

    def _consent(self, root: Path) -> dict[str, Any] | None:
        return consent_of(root)

    # ---- state --------------------------------------------------------------------------------
    def api_ws(self, req: Req) -> Response:
        from faceloom.train.log import loss_curves

        name = req.params["name"]
        entry = self.registry.get(name)
        if entry.draft:
            return json_response(self._draft_json(entry))
        ws, root = self._open_ws(name)
        status_error: str | None = None
        try:
            status = {k: stage_json(v) for k, v in ws.status().items()}
        except FaceloomError as exc:
            status, status_error = {}, str(exc)
        facesets = {
            role: self._faceset_summary(p)
            for role, p in (("a", ws.faceset_a), ("b", ws.faceset_b), ("target", ws.faceset_target))
        }
        preview = ws.model_dir / "previews" / "latest.png"
        outputs: dict[str, Any] = {}
        for kind, p in (("output", ws.output_video), ("side_by_side", ws.side_by_side_video)):
            rel = _rel_to(p, root)
            outputs[kind] = {"exists": rel is not None, "path": rel}
        job = self.jobs.latest_for(name)
        rows = loss_curves(ws.model_dir)["rows"]
        kept = {k: [p.relative_to(root).as_posix() for p in v] for k, v in ws.kept().items()}
        return json_response(
            {
                "name": name,
                "path": str(root),
                "draft": False,
                "train_target": ws.settings.get("train", {}).get("iterations"),
                "stages": status,
                "status_error": status_error,
                "inputs": inputs_of(ws),
                "settings": {k: v for k, v in ws.settings.items() if k in STAGE_NAMES},
                "facesets": facesets,
                "preview": _rel_to(preview, root),
                "preview_mtime": preview.stat().st_mtime if preview.is_file() else None,
                "train_step": rows[-1][0] if rows else None,
                "coverage": _coverage_summary(_read_json(ws.analysis_dir / "coverage.json")),
                "report": _rel_to(ws.report_html, root),
                "eval": _read_json(ws.eval_json),
                "outputs": outputs,
                "kept": kept,
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
            "kept": {"models": [], "facesets": [], "outputs": []},
            "consent": self._consent(entry.path),
            "job": job.to_json() if job else None,
        }

    def _faceset_summary(self, path: Path) -> dict[str, Any]:
        from faceloom.faces.faceset import Faceset

        if not Faceset.is_faceset(path):
            return {"exists": False, "faces": 0}
        header = _read_json(path / "faceset.json") or {}
        return {"exists": True, "faces": int(header.get("faces", 0) or 0)}

    # ---- faces --------------------------------------------------------------------------------
    def _faceset(self, ws: Workspace, role: str) -> Any:
        from faceloom.faces.faceset import Faceset

        if role not in ROLES:
            raise HTTPError(400, f"role must be one of {', '.join(ROLES)}")
        path = {"a": ws.faceset_a, "b": ws.faceset_b, "target": ws.faceset_target}[role]
        if not Faceset.is_faceset(path):
            raise HTTPError(404, f"no faces of {role} yet: run extract first")
        try:
            return Faceset.load(path)
        except FaceloomError as exc:
            raise HTTPError(409, str(exc)) from exc

    def api_faces(self, req: Req) -> Response:
        from faceloom.faces.faceset_query import short_id

        name, role = req.params["name"], req.params["role"]
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

    def api_faces_remove(self, req: Req) -> Response:
        from faceloom.faces.faceset_edit import remove_faces

        name, role = req.params["name"], req.params["role"]
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

    # ---- settings, consent, runs --------------------------------------------------------------
    def api_settings(self, req: Req) -> Response:
        """Change settings that the metadata lets the UI change: ``{"train": {"iterations": 20}}``.

        Paths cannot be set here (inputs go through ``inputs``/``upload``, which confine them).
        """
        name = req.params["name"]
        ws, root = self._open_ws(name)
        self._busy_check(name)
        changes: dict[str, dict[str, Any]] = {}
        for section, values in req.json().items():
            if section not in STAGE_NAMES or not isinstance(values, dict):
                raise HTTPError(400, f"unknown settings section {section!r}")
            for key, value in values.items():
                allowed = editable(section, key)
                if allowed is None:
                    raise HTTPError(400, f"unknown setting {section}.{key}")
                if not allowed:
                    raise HTTPError(403, f"{section}.{key} cannot be changed from the UI")
                changes.setdefault(section, {})[key] = _setting_value(section, key, value)
        try:
            for section, values in changes.items():
                ws.update_settings(section, values)
        except (FaceloomError, ValueError, TypeError) as exc:
            raise HTTPError(400, str(exc)) from exc
        fresh = Workspace.open(root).settings
        return json_response({"settings": {k: v for k, v in fresh.items() if k in STAGE_NAMES}})

    def api_consent(self, req: Req) -> Response:
        root = self.registry.get(req.params["name"]).path
        if req.json().get("agree") is not True:
            raise HTTPError(400, 'consent is given with {"agree": true}')
        data = {"agreed": True, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "text": CONSENT_TEXT}
        atomic_write_text(root / CONSENT_FILE, json.dumps(data, indent=1))
        return json_response({"consent": data})

    def api_run(self, req: Req) -> Response:
        """Start ``faceloom run``: ``{"stages": [...], "iterations": N, "minutes": M}``; no stages
        means the whole chain."""
        from faceloom.ui.jobs import JobError

        name = req.params["name"]
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

    # ---- results ------------------------------------------------------------------------------
    def api_trainlog(self, req: Req) -> Response:
        from faceloom.train.log import loss_curves

        ws, _ = self._open_ws(req.params["name"])
        return json_response(loss_curves(ws.model_dir))

    def api_video(self, req: Req) -> Response:
        """A browser copy (H.264/AAC) of an output video; built on first request."""
        from faceloom.ui.media import browser_preview, plays_in_browser

        name, kind = req.params["name"], req.params["kind"]
        ws, root = self._open_ws(name)
        src = {"output": ws.output_video, "side_by_side": ws.side_by_side_video}.get(kind)
        if src is None:
            raise HTTPError(404, "no such video kind")
        rel = _rel_to(src, root)
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

    def ws_file(self, req: Req) -> Response:
        root = self.registry.get(req.params["name"]).path
        try:
            path = security.confine_relative(root, req.params["rel"])
        except Forbidden as exc:
            raise HTTPError(403, str(exc)) from exc
        headers = {"Content-Security-Policy": SANDBOX_CSP, "Cache-Control": "no-cache"}
        return file_response(path, headers, download=bool(req.query.get("download")))


__all__ = ["CONSENT_TEXT", "ROLES", "UI_PRESET", "WorkspaceRoutes", "kept_aside", "stage_json"]
