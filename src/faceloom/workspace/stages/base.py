"""What a stage of a workspace run is: one class with everything about it.

A stage declares its name, the stages whose outputs it reads, its settings (the config classes of
its section of faceloom.toml, with a note for that section), and implements four things: the
fingerprint of what it would run on now, whether its outputs exist, running it, and a one-line
summary of what its last run recorded. The runner, the status, the settings file, the CLI and the UI
all take stages from :data:`faceloom.workspace.stages.STAGES`; adding a stage is adding one class.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from faceloom.config.meta import Settings
from faceloom.progress import Cancelled, Progress, ProgressFn, report

if TYPE_CHECKING:
    from faceloom.workspace.workspace import Workspace


@dataclass
class Outcome:
    """What a stage's run leaves in state.json beside its fingerprint."""

    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageRun:
    """The context a stage runs in: the workspace, progress, cancel, and the record it builds."""

    ws: Workspace
    progress: ProgressFn | None
    cancel: threading.Event
    extra: dict[str, Any] = field(default_factory=dict)
    """The running stage's record extras, saved when it fails (train keeps its seconds here)."""
    stage: str = ""

    def report(self, fraction: float, message: str) -> None:
        """Progress within the stage: below 1.0, which is kept for :meth:`finish`."""
        report(self.progress, self.stage, min(0.999, max(0.0, fraction)), 1.0, message)

    def finish(self, stage: str, message: str) -> None:
        report(self.progress, stage, 1.0, 1.0, message)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled

    def local(self, raw: str) -> Path:
        """A local path for an input, downloading a URL (once) into inputs/."""
        from faceloom.workspace.inputs import local_input

        def on_bytes(p: Progress) -> None:
            size = f"{p.done / 1e6:.1f}" + (f" of {p.total / 1e6:.1f}" if p.total else "")
            self.report(0.0, f"downloading {raw}: {size} MB")

        return local_input(self.ws, raw, on_bytes, self.cancel)


class Stage:
    """One step of the chain. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    order: ClassVar[int]
    """Position in the chain (stages run in this order)."""
    upstream: ClassVar[tuple[str, ...]] = ()
    """The stages whose outputs it reads."""
    configs: ClassVar[tuple[type[Settings], ...]] = ()
    """Its settings: the config classes of its section of faceloom.toml."""
    note: ClassVar[str] = ""
    """The comment over its section of faceloom.toml."""
    needs_target: ClassVar[bool] = False
    """Skipped (with a warning) when the workspace has no target video."""

    def reads(self, ws: Workspace) -> tuple[str, ...]:
        """The stages whose outputs it reads in ``ws`` (by default: all of :attr:`upstream`)."""
        return self.upstream

    def fingerprint(self, ws: Workspace) -> str:
        """Fingerprint of what it would run on now: its settings, inputs and upstream outputs."""
        raise NotImplementedError

    def outputs_exist(self, ws: Workspace) -> bool:
        raise NotImplementedError

    def run(self, run: StageRun) -> Outcome:
        raise NotImplementedError

    def summary(self, extra: dict[str, Any], warnings: list[str]) -> str:
        """One line about its last run, from what it recorded ("" when there is nothing to say)."""
        return ""
