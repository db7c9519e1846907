"""The workspaces the UI knows: folders in its workspaces folder, ones opened from allowed folders,
and drafts (a name and inputs, before both A and B are given)."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from faceloom.fsutil import atomic_write_text
from faceloom.ui import security
from faceloom.ui.config import UIConfig
from faceloom.ui.http import HTTPError
from faceloom.ui.security import Forbidden
from faceloom.workspace.workspace import Workspace

DRAFT_FILE = "draft.json"


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
        out: dict[str, Entry] = {}
        root = self.config.workspaces
        if root.is_dir():
            for p in sorted(root.iterdir()):
                if p.is_dir() and security.NAME_RE.fullmatch(p.name) and Workspace.is_workspace(p):
                    out[p.name] = Entry(p.name, p.resolve())
        for name, path in self._opened().items():
            p = Path(path)
            if name not in out and security.NAME_RE.fullmatch(name) and Workspace.is_workspace(p):
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
