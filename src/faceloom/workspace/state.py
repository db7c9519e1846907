"""state.json (what each stage last ran on, and how it went) and the workspace's run lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faceloom.errors import FaceloomError, FormatError, output_error_from_os
from faceloom.fsutil import atomic_write_text

STATE_FORMAT = "faceloom-workspace-state"
STATE_VERSION = 1

StageState = Literal["done", "stale", "pending", "running", "failed"]


@dataclass
class StageStatus:
    state: StageState
    seconds: float | None = None
    """Wall time of its last successful run."""
    error: str | None = None
    """Last failure, one line."""
    finished: str | None = None
    """ISO time of its last successful run."""


class WorkspaceBusy(FaceloomError):
    """Another run holds the workspace's lock."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class StateFile:
    """state.json: ``{"stages": {stage: record}}``; each record is rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"format": STATE_FORMAT, "version": STATE_VERSION, "stages": {}}
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FormatError(
                f"damaged state file ({one_line(exc)}); delete it to redo every stage", self.path
            ) from exc
        if int(data.get("version", 0)) > STATE_VERSION:
            raise FormatError("state file written by a newer faceloom; upgrade faceloom", self.path)
        data.setdefault("stages", {})
        return data

    def stages(self) -> dict[str, dict[str, Any]]:
        stages: dict[str, dict[str, Any]] = self.read()["stages"]
        return stages

    def record(self, stage: str) -> dict[str, Any]:
        return dict(self.stages().get(stage, {}))

    def write(self, stage: str, record: dict[str, Any]) -> None:
        data = self.read()
        data["stages"][stage] = record
        data["updated"] = now()
        atomic_write_text(self.path, json.dumps(data, indent=1, default=str))


def running_record(extra: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stage's record while it runs; keeps the time of its last successful run."""
    last = {k: v for k, v in (previous or {}).items() if k in ("seconds", "finished")}
    return {"state": "running", "pid": os.getpid(), "started": now(), **last, "extra": extra}


class RunLock:
    """An flock on the workspace's ``.lock``, released by the OS if the process dies."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root

    def holder(self) -> int | None:
        """The pid of the run holding the lock (0 if unknown), or None when it is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            return None
        finally:
            os.close(fd)  # closing drops the probe's own lock

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the ``with`` block; WorkspaceBusy naming the other run's pid when held."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error_from_os(exc, self.path) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise WorkspaceBusy(
                    f"workspace {self.root} is in use by another faceloom run (pid {pid}); "
                    "wait for it to finish or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)
