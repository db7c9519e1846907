"""Settings of the analyze stage of a workspace run (``[analyze]`` in faceloom.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.meta import Settings, setting


@dataclass(frozen=True)
class AnalyzeConfig(Settings):
    SECTION: ClassVar[str] = "analyze"

    strict: bool = setting(False, "Stop the run before training when the coverage report has any warning.")
