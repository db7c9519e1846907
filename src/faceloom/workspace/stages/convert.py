"""The convert stage: the target video swapped (and side by side), labelled and watermarked.

An output that a new run replaces is kept as ``output/swapped.prev-<time>.mp4``, never deleted.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from faceloom.config import ConvertConfig
from faceloom.config.meta import fingerprint
from faceloom.faces.faceset import Faceset
from faceloom.fsutil import ensure_dir, move_aside
from faceloom.progress import Progress
from faceloom.workspace.inputs import input_fingerprint
from faceloom.workspace.stages.base import Outcome, Stage, StageRun

if TYPE_CHECKING:
    from faceloom.workspace.workspace import Workspace


def model_fingerprint(ws: Workspace) -> str:
    from faceloom.train.modeldir import ModelDir

    return ModelDir.checkpoint_fingerprint(ws.model_dir)


class ConvertStage(Stage):
    name = "convert"
    order = 40
    upstream = ("extract", "train")
    configs = (ConvertConfig,)
    note = "faceloom convert: side_by_side = also write output/side_by_side.mp4."
    needs_target = True

    def fingerprint(self, ws: Workspace) -> str:
        target = ws.target
        return fingerprint(
            {
                "model": model_fingerprint(ws),
                "target": input_fingerprint(ws, target) if target else None,
                "target_faceset": Faceset.table_fingerprint(ws.faceset_target),
                "convert": ws.convert_config().output_fingerprint(),
            }
        )

    def outputs_exist(self, ws: Workspace) -> bool:
        sbs = ws.convert_config().side_by_side
        return ws.output_video.is_file() and (not sbs or ws.side_by_side_video.is_file())

    def run(self, run: StageRun) -> Outcome:
        from faceloom.convert.pipeline import convert

        ws = run.ws
        assert ws.target is not None
        target = run.local(ws.target)
        cc = ws.convert_config()
        jobs = [(ws.output_video, replace(cc, side_by_side=False))]
        if cc.side_by_side:
            jobs.append((ws.side_by_side_video, replace(cc, side_by_side=True)))
        elif ws.side_by_side_video.exists():
            move_aside(ws.side_by_side_video)
        faceset = ws.faceset_target if Faceset.is_faceset(ws.faceset_target) else None
        ensure_dir(ws.output_video.parent)
        outcome = Outcome()
        for j, (final, config) in enumerate(jobs):
            run.check_cancel()
            partial = final.with_name(f".partial-{final.name}")

            def on_frames(p: Progress, j: int = j, name: str = final.name) -> None:
                run.report(
                    (j + (p.fraction or 0.0)) / len(jobs), f"{name}: frame {p.done:.0f}/{p.total or 0:.0f}"
                )

            result = convert(
                target,
                ws.model_dir,
                partial,
                config,
                faceset=faceset,
                overwrite=True,
                progress=on_frames,
                cancel=run.cancel,
            )
            if final.exists():
                move_aside(final)
            os.replace(partial, final)
            outcome.warnings += [
                f"convert: {w}" for w in result.warnings if f"convert: {w}" not in outcome.warnings
            ]
            if j == 0:
                outcome.extra = {
                    "frames": result.frames,
                    "frames_with_swaps": result.frames_with_swaps,
                    "faces_swapped": result.faces_swapped,
                    "faces_left_alone": result.faces_left_alone,
                    "audio": result.audio,
                }
        return outcome

    def summary(self, extra: dict[str, Any], warnings: list[str]) -> str:
        if "frames" not in extra:
            return ""
        audio = extra.get("audio")
        return f"{extra['frames']} frames, {extra.get('faces_swapped')} faces swapped" + (
            f", audio {audio}" if audio else ""
        )
