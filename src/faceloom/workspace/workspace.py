"""A workspace: one folder with every input, setting and output of a swap (layout: :mod:`.layout`).

A stage is up to date when the fingerprint of what it reads (its settings, its input files and the
*current* outputs of the stages it reads) equals the one recorded when it last finished, so a re-run
skips it; a changed setting redoes only the stages that read it, and an edited faceset (``faceloom
faceset remove``) redoes the stages after extract.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from faceloom import __version__
from faceloom.config import (
    AnalyzeConfig,
    ConvertConfig,
    EarlyStopConfig,
    EvalConfig,
    ExtractConfig,
    TrainConfig,
)
from faceloom.errors import FormatError, OutputError
from faceloom.fsutil import ensure_dir
from faceloom.workspace.inputs import check_inputs, stored_input
from faceloom.workspace.layout import SETTINGS_FILE, WorkspaceLayout
from faceloom.workspace.settings_file import (
    normalize_section,
    read_settings,
    section_classes,
    section_of,
    write_settings,
)
from faceloom.workspace.stages import STAGES
from faceloom.workspace.stages.extract import target_extract_config
from faceloom.workspace.state import RunLock, StageState, StageStatus, StateFile

WORKSPACE_VERSION = 1


class Workspace(WorkspaceLayout):
    """A workspace folder. Make one with :meth:`create`, load one with :meth:`open`."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.settings = settings
        self.state = StateFile(self.state_file)
        self._lock = RunLock(self.lock_file, root)

    # ---- construction -------------------------------------------------------------------------
    @staticmethod
    def is_workspace(root: str | Path) -> bool:
        return (Path(root) / SETTINGS_FILE).is_file()

    @classmethod
    def create(
        cls,
        root: str | Path,
        a: list[str],
        b: list[str],
        target: str | None,
        *,
        settings: dict[str, dict[str, Any]] | None = None,
        **values: Any,
    ) -> Workspace:
        """Make a new workspace at ``root`` (a new or empty folder).

        Args:
            settings: values for some sections (``{"convert": {"side_by_side": True}}``); every other
                setting takes its config's default.
            values: shorthand for settings whose name only one section has (``model=``,
                ``minutes=``, ``side_by_side=``); None values are left out.

        Raises OutputError when ``root`` is a workspace already or a non-empty folder, InputError
        for a missing input, SettingError for a bad setting.
        """
        path = Path(root)
        if cls.is_workspace(path):
            raise OutputError("is a workspace already; open it (faceloom run --workspace DIR)", path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise OutputError("exists, is not empty and is not a faceloom workspace", path)
        given = {k: dict(v) for k, v in (settings or {}).items()}
        for key, value in values.items():
            if value is not None:
                given.setdefault(section_of(key), {})[key] = value
        stored: dict[str, Any] = {
            "workspace": {"version": WORKSPACE_VERSION, "created_by": f"faceloom {__version__}"},
            "inputs": check_inputs(a, b, target),
        }
        for section in section_classes():
            stored[section] = normalize_section(section, given.get(section, {}))
        ws = cls(ensure_dir(path).resolve(), stored)
        ws.save()
        return ws

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        """Load a workspace. FormatError if ``root`` is none, is damaged or is from a newer faceloom."""
        ws = cls(Path(root).resolve(), {})
        ws.reload()
        return ws

    def reload(self) -> None:
        """Re-read faceloom.toml (another process, the UI or an editor may have changed it)."""
        path = self.settings_file
        if not path.is_file():
            raise FormatError(f"not a faceloom workspace (no {SETTINGS_FILE})", self.root)
        raw = read_settings(path)
        meta = raw.get("workspace", {})
        version = meta.get("version")
        if not isinstance(version, int):
            raise FormatError("settings file has no [workspace] version", path)
        if version > WORKSPACE_VERSION:
            raise FormatError(
                f"workspace made by a newer faceloom ({meta.get('created_by', '?')}, workspace version "
                f"{version}); faceloom {__version__} reads version {WORKSPACE_VERSION}. Upgrade faceloom",
                self.root,
            )
        inputs = raw.get("inputs", {})
        settings: dict[str, Any] = {
            "workspace": meta,
            "inputs": {
                "a": [str(v) for v in inputs.get("a", [])],
                "b": [str(v) for v in inputs.get("b", [])],
                "target": inputs.get("target"),
            },
        }
        try:
            for section in section_classes():
                settings[section] = normalize_section(section, raw.get(section, {}))
        except ValueError as exc:
            raise FormatError(str(exc), path) from None
        self.settings = settings

    def save(self) -> None:
        write_settings(self.settings_file, self.settings)

    # ---- editing ------------------------------------------------------------------------------
    def set_inputs(
        self, a: list[str] | None = None, b: list[str] | None = None, target: str | None = None
    ) -> None:
        """Replace A's inputs, B's inputs or the target (None leaves that one as it is; "" removes the
        target), and save."""
        cur = self.settings["inputs"]
        old_target = cur.get("target")
        self.settings["inputs"] = check_inputs(
            a if a is not None else [stored_input(self, x) for x in cur["a"]],
            b if b is not None else [stored_input(self, x) for x in cur["b"]],
            target if target is not None else (stored_input(self, old_target) if old_target else None),
        )
        self.save()

    def update_settings(self, section: str, values: dict[str, Any]) -> None:
        """Change some settings of one section (validated by its typed config) and save.

        Raises SettingError (a ValueError) for an unknown section or key, or a value its config refuses.
        """
        merged = {**self.settings.get(section, {}), **values}
        self.settings[section] = normalize_section(section, merged)
        self.save()

    # ---- typed views --------------------------------------------------------------------------
    @property
    def inputs_a(self) -> list[str]:
        return list(self.settings["inputs"]["a"])

    @property
    def inputs_b(self) -> list[str]:
        return list(self.settings["inputs"]["b"])

    @property
    def target(self) -> str | None:
        t = self.settings["inputs"].get("target")
        return str(t) if t else None

    def extract_config(self) -> ExtractConfig:
        return ExtractConfig.from_dict(self.settings["extract"])

    def target_extract_config(self) -> ExtractConfig:
        return target_extract_config(self.extract_config())

    def analyze_config(self) -> AnalyzeConfig:
        return AnalyzeConfig.from_dict(self.settings["analyze"])

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.settings["train"])

    def early_stop(self) -> EarlyStopConfig:
        return EarlyStopConfig.from_dict(self.settings["train"])

    def convert_config(self) -> ConvertConfig:
        return ConvertConfig.from_dict(self.settings["convert"])

    def eval_config(self) -> EvalConfig:
        return EvalConfig.from_dict(self.settings["eval"])

    # ---- state and lock -----------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        return self.state.read()

    def lock_holder(self) -> int | None:
        """The pid of the run holding the workspace's lock (0 if unknown), or None when it is free."""
        return self._lock.holder()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace's lock; WorkspaceBusy naming the other run's pid when it is held."""
        with self._lock.hold():
            yield

    def upstream(self, stage: str) -> tuple[str, ...]:
        """The stages whose outputs ``stage`` reads in this workspace."""
        from faceloom.workspace.stages import get_stage

        return get_stage(stage).reads(self)

    def status(self) -> dict[str, StageStatus]:
        """Each stage's state: its fingerprint compared with the current settings, inputs and outputs."""
        return self.status_with(holder=self.lock_holder())

    def status_with(self, holder: int | None) -> dict[str, StageStatus]:
        """:meth:`status` as seen by a run whose lock state is ``holder`` (None: nobody runs)."""
        records = self.state.stages()
        out: dict[str, StageStatus] = {}
        for stage in STAGES:
            rec = records.get(stage.name, {})
            recorded = rec.get("state")
            seconds, finished = rec.get("seconds"), rec.get("finished")
            ups_fresh = all(out[u].state == "done" for u in stage.reads(self))
            error = None
            state: StageState
            if recorded == "running" and holder is not None and holder in (0, rec.get("pid")):
                state = "running"
            elif recorded == "running":
                state, error = (
                    "failed",
                    "interrupted (the run stopped during this stage); run again to resume",
                )
            elif recorded == "failed":
                state, error = "failed", rec.get("error")
            elif recorded == "done":
                fresh = (
                    ups_fresh
                    and stage.outputs_exist(self)
                    and rec.get("fingerprint") == stage.fingerprint(self)
                )
                state = "done" if fresh else "stale"
            else:
                state = "pending"
            out[stage.name] = StageStatus(state, seconds, error, finished)
        return out


__all__ = ["WORKSPACE_VERSION", "Workspace", "replace"]
