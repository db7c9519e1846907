"""What the UI server was started with (from :class:`faceloom.config.UISettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from faceloom.config import UISettings
from faceloom.ui import security

_DEFAULTS = UISettings()


@dataclass
class UIConfig:
    """The running server's settings, paths resolved.

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
    host: str = _DEFAULTS.host
    port: int = _DEFAULTS.port
    token: str | None = _DEFAULTS.token
    max_upload_mb: float = _DEFAULTS.max_upload_mb
    max_training_jobs: int = _DEFAULTS.max_training_jobs
    max_jobs: int = _DEFAULTS.max_jobs
    state_dir: Path | None = None
    nice: int = _DEFAULTS.nice

    def __post_init__(self) -> None:
        self.workspaces = Path(self.workspaces).expanduser().resolve()
        self.allowed = [Path(p).expanduser().resolve() for p in self.allowed]
        if self.state_dir is None:
            self.state_dir = self.workspaces / ".faceloom-ui"
        if not security.is_loopback(self.host) and not self.token:
            raise ValueError("an access token is required when the UI listens beyond this machine")

    @classmethod
    def from_settings(cls, s: UISettings) -> UIConfig:
        return cls(
            workspaces=Path(s.workspaces),
            allowed=[Path(p) for p in s.allow],
            host=s.host,
            port=s.port,
            token=s.token,
            max_upload_mb=s.max_upload_mb,
            max_training_jobs=s.max_training_jobs,
            max_jobs=s.max_jobs,
            nice=s.nice,
        )
