"""Run a workspace's stages that are not up to date, in order, holding its lock."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceloom.errors import FaceloomError
from faceloom.progress import Cancelled, ProgressFn
from faceloom.workspace.stages import STAGE_NAMES, STAGES, Stage, StageRun
from faceloom.workspace.stages.base import Outcome
from faceloom.workspace.state import now, one_line, running_record
from faceloom.workspace.workspace import Workspace


class StrictWarnings(FaceloomError):
    """``--strict``: the analysis found problems, so the run stops before training."""

    exit_code = 1


@dataclass
class RunSummary:
    ran: list[str]
    skipped: list[str]
    seconds: dict[str, float]
    output: Path | None
    side_by_side: Path | None
    report: Path | None
    eval: dict[str, Any] | None
    warnings: list[str]
    cancelled: bool = False
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage that ran: what it recorded (e.g. train: step, stopped_by, holdout)."""
    kept: dict[str, list[Path]] = field(default_factory=dict)
    """What was kept aside instead of deleted (earlier models, facesets, outputs)."""


def _run_stage(run: StageRun, stage: Stage, previous: dict[str, Any]) -> tuple[float, Outcome]:
    """Run one stage, recording running / done / failed in state.json. Returns (seconds, outcome)."""
    ws = run.ws
    fp = stage.fingerprint(ws)
    run.stage = stage.name
    run.extra = {}
    ws.state.write(stage.name, running_record(run.extra, previous))
    run.report(0.0, "started")
    t0 = time.monotonic()
    try:
        outcome = stage.run(run)
        run.check_cancel()
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        cancelled = isinstance(exc, Cancelled) or (run.cancel.is_set() and not interrupted)
        error = "cancelled" if cancelled else "interrupted" if interrupted else one_line(exc)
        failed = {**previous, "state": "failed", "error": error, "failed_at": now(), "extra": run.extra}
        ws.state.write(stage.name, failed)
        if cancelled and not isinstance(exc, Cancelled):
            raise Cancelled from exc
        raise
    seconds = time.monotonic() - t0
    record = {
        "state": "done",
        "fingerprint": fp,
        "seconds": round(seconds, 2),
        "finished": now(),
        "warnings": outcome.warnings,
        "extra": outcome.extra,
    }
    ws.state.write(stage.name, record)
    run.finish(stage.name, f"done in {seconds:.1f} s")
    return seconds, outcome


def run_workspace(
    ws: Workspace,
    *,
    only: list[str] | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    force: bool = False,
) -> RunSummary:
    """Run the stages of ``ws`` that are not up to date, in order, holding the workspace's lock.

    Args:
        only: run just these stages (each needs the stages it reads to be up to date).
        strict: stop before training when the analysis warns (also ``analyze.strict``).
        progress: events with ``task`` = the stage, ``done`` its share of 1.0 and a message; each stage
            that runs reports 0.0 ("started") first and 1.0 ("done in N s") last; a stage that is
            skipped reports 1.0 (why it was skipped) once.
        cancel: set it to stop at the next safe point; the summary then has ``cancelled`` set and
            the stage that was running is recorded as failed ("cancelled"); training keeps its last
            checkpoint and the next run resumes it.
        force: run the chosen stages even when they are up to date.

    Raises:
        WorkspaceBusy: another run holds the lock. InputError / OutputError / FormatError: a stage
        failed (recorded in state.json; finished stages are kept). StrictWarnings (exit code 1).
    """
    wanted = list(only) if only else list(STAGE_NAMES)
    for name in wanted:
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    run = StageRun(ws, progress, cancel or threading.Event())
    summary = RunSummary([], [], {}, None, None, None, None, [])
    with ws.lock():
        ws.reload()
        for stage in STAGES:
            if stage.name not in wanted:
                continue
            status = ws.status_with(holder=None)
            for up in stage.reads(ws):
                if up not in wanted and status[up].state != "done":
                    state = status[up].state
                    raise FaceloomError(
                        f"cannot run {stage.name}: {up} is {state}; run it first (leave out --only)"
                    )
            if stage.needs_target and not ws.target:
                summary.skipped.append(stage.name)
                summary.warnings.append(f"no target video: nothing to {stage.name} (give --target VIDEO)")
                run.finish(stage.name, "skipped: no target video")
                continue
            if status[stage.name].state == "done" and not force:
                summary.skipped.append(stage.name)
                run.finish(stage.name, "up to date, skipped")
            else:
                previous = ws.state.record(stage.name)
                try:
                    seconds, outcome = _run_stage(run, stage, previous)
                except Cancelled:
                    summary.cancelled = True
                    break
                summary.ran.append(stage.name)
                summary.seconds[stage.name] = round(seconds, 2)
                summary.warnings += outcome.warnings
                summary.details[stage.name] = outcome.extra
            if stage.name == "analyze" and (strict or ws.analyze_config().strict):
                warned = ws.state.record("analyze").get("warnings", [])
                if warned:
                    raise StrictWarnings(
                        f"the analysis found {len(warned)} problem(s) and strict mode is on; "
                        f"see {ws.report_html} (finished stages are kept)"
                    )
    _fill_outputs(ws, summary)
    return summary


def _fill_outputs(ws: Workspace, summary: RunSummary) -> None:
    import json

    status = ws.status_with(holder=None)
    if status["convert"].state == "done":
        summary.output = ws.output_video
        if ws.convert_config().side_by_side and ws.side_by_side_video.is_file():
            summary.side_by_side = ws.side_by_side_video
    if ws.report_html.is_file():
        summary.report = ws.report_html
    if status["eval"].state == "done":
        try:
            data = json.loads(ws.eval_json.read_text())
        except (OSError, ValueError):
            data = None
        summary.eval = data if isinstance(data, dict) else None
    summary.kept = {k: v for k, v in ws.kept().items() if v}
