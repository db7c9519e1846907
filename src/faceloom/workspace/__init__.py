"""The `faceloom run` chain: a workspace folder, its settings, one class per stage, the runner.

Modules, each one concern: :mod:`.layout` (where things lie), :mod:`.settings_file`
(faceloom.toml), :mod:`.state` (state.json and the run lock), :mod:`.inputs` (checking and
fingerprinting inputs, fetching URLs with :mod:`.fetch`), :mod:`.stages` (the registry: one class
per stage), :mod:`.workspace` (the Workspace and its status), :mod:`.runner` (run_workspace),
:mod:`.demo` and :mod:`.sample_media` (`faceloom demo`).
"""

from faceloom.workspace.runner import RunSummary, StrictWarnings, run_workspace
from faceloom.workspace.settings_file import dump_toml, normalize_section
from faceloom.workspace.stages import STAGE_NAMES, STAGES, Stage, get_stage
from faceloom.workspace.state import StageState, StageStatus, WorkspaceBusy
from faceloom.workspace.workspace import WORKSPACE_VERSION, Workspace

__all__ = [
    "STAGES",
    "STAGE_NAMES",
    "WORKSPACE_VERSION",
    "RunSummary",
    "Stage",
    "StageState",
    "StageStatus",
    "StrictWarnings",
    "Workspace",
    "WorkspaceBusy",
    "dump_toml",
    "get_stage",
    "normalize_section",
    "run_workspace",
]
