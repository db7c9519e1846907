"""Where everything lies in a workspace folder.

Layout::

    faceloom.toml         every setting of every stage (editable; typed by faceloom.config)
    state.json            per stage: fingerprint of what it ran on, state, wall time, last error
    .lock                 flock-ed while a run is going; holds the pid of that run
    inputs/               URL inputs, downloaded
    facesets/a, b, target faces of A (their footage and the target), of B, and of the target alone
    analysis/             report.html, coverage.json
    model/                the model dir (checkpoints, previews, log)
    output/               swapped.mp4, side_by_side.mp4
    eval/                 eval.json

Nothing the user made is deleted: a model that a changed setting replaces, a faceset extracted
again at another size, an output that a new convert replaces are renamed ``NAME.prev-...`` beside
themselves (:func:`faceloom.fsutil.move_aside`) and listed by :meth:`WorkspaceLayout.kept`.
"""

from __future__ import annotations

from pathlib import Path

from faceloom.fsutil import kept_aside

SETTINGS_FILE = "faceloom.toml"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


class WorkspaceLayout:
    """The paths of a workspace rooted at ``root``."""

    root: Path

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    @property
    def facesets_dir(self) -> Path:
        return self.root / "facesets"

    @property
    def faceset_a(self) -> Path:
        return self.facesets_dir / "a"

    @property
    def faceset_b(self) -> Path:
        return self.facesets_dir / "b"

    @property
    def faceset_target(self) -> Path:
        return self.facesets_dir / "target"

    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    @property
    def report_html(self) -> Path:
        return self.analysis_dir / "report.html"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_video(self) -> Path:
        return self.output_dir / "swapped.mp4"

    @property
    def side_by_side_video(self) -> Path:
        return self.output_dir / "side_by_side.mp4"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval" / "eval.json"

    def input_path(self, raw: str) -> Path:
        """A local input as an absolute path (relative ones are relative to the workspace)."""
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.root / p

    def kept(self) -> dict[str, list[Path]]:
        """What was kept aside instead of deleted: earlier models, facesets and outputs."""
        return {
            "models": kept_aside(self.root),
            "facesets": kept_aside(self.facesets_dir),
            "outputs": kept_aside(self.output_dir),
        }
