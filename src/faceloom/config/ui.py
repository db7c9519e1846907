"""Settings of `faceloom ui` (the web UI's server): where it keeps workspaces, what it may read,
where it listens, and how many jobs it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.meta import Settings, setting


@dataclass(frozen=True)
class UISettings(Settings):
    SECTION: ClassVar[str] = "ui"

    workspaces: str = setting("faceloom-workspaces", "Folder where the UI creates and lists workspaces.")
    allow: tuple[str, ...] = setting(
        (), "A folder whose videos and images may be picked as inputs (read only). Repeatable.", ui=False
    )
    host: str = setting("127.0.0.1", "Address to listen on; beyond 127.0.0.1 an access token is required.")
    port: int = setting(7860, "Port; 0 picks a free one.", low=0, high=65535)
    token: str | None = setting(
        None,
        "Access token (made up and printed when --host is not loopback and none is given; "
        "also read from $FACELOOM_UI_TOKEN).",
        unset="none on loopback",
    )
    max_upload_mb: float = setting(2048.0, "Largest upload accepted, in MB.", low=0.0, low_open=True)
    max_training_jobs: int = setting(1, "Training jobs run at once; others wait in a queue.", low=1)
    max_jobs: int = setting(2, "Jobs of any kind run at once.", low=1)
    nice: int = setting(10, "Niceness of job processes.", low=0, high=19)
