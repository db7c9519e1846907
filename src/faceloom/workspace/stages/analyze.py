"""The analyze stage: the coverage report of A and B against the target, before training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceloom.config import AnalyzeConfig
from faceloom.config.meta import fingerprint
from faceloom.faces.faceset import Faceset
from faceloom.progress import Progress
from faceloom.workspace.stages.base import Outcome, Stage, StageRun

if TYPE_CHECKING:
    from faceloom.workspace.workspace import Workspace


class AnalyzeStage(Stage):
    name = "analyze"
    order = 20
    upstream = ("extract",)
    configs = (AnalyzeConfig,)
    note = "faceloom analyze: strict = stop before training when the report has warnings."

    def fingerprint(self, ws: Workspace) -> str:
        return fingerprint(
            {
                "a": Faceset.table_fingerprint(ws.faceset_a),
                "b": Faceset.table_fingerprint(ws.faceset_b),
                "target": Faceset.table_fingerprint(ws.faceset_target) if ws.target else None,
                "mirror_b": ws.train_config().flip_b,
            }
        )

    def outputs_exist(self, ws: Workspace) -> bool:
        return ws.report_html.is_file()

    def run(self, run: StageRun) -> Outcome:
        from faceloom.analysis.analyze import analyze

        ws = run.ws

        def on_progress(p: Progress) -> None:
            run.report(p.fraction or 0.0, p.task)

        analysis, _ = analyze(
            ws.faceset_a,
            ws.faceset_b,
            ws.analysis_dir,
            ws.faceset_target if ws.target else None,
            mirror_b=ws.train_config().flip_b,
            extract_config=ws.extract_config(),
            progress=on_progress,
        )
        report = analysis.report
        return Outcome(
            warnings=[f"analysis: {w['message']}" for w in report["warnings"]],
            extra={"uncovered": report["uncovered"], "advice": report["advice"]},
        )

    def summary(self, extra: dict[str, Any], warnings: list[str]) -> str:
        share = extra.get("uncovered", {}).get("share")
        note = f"{len(warnings)} warning(s)"
        return note + (f", {share:.0%} of target frames outside B's coverage" if share is not None else "")
