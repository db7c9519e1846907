"""`faceloom run` (the whole chain in a workspace folder) and `faceloom demo` (it, on sample media)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperCommand

from faceloom.cli import app, echo, echo_json, state, warn
from faceloom.errors import InputError

if TYPE_CHECKING:
    from faceloom.workspace import RunSummary, Workspace

ModelChoice = Literal["lite", "original", "loom"]


MANY_VALUES = frozenset({"--a", "--b", "--only", "--set"})


def expand_many_values(args: list[str], many: frozenset[str] = MANY_VALUES) -> list[str]:
    """``--a x y --b z`` -> ``--a x --a y --b z`` for the options in ``many`` (click takes one value
    per occurrence of an option). Values run until the next token that starts with ``-``."""
    out: list[str] = []
    current: str | None = None
    taken = 0
    for i, tok in enumerate(args):
        if tok == "--":
            out += args[i:]
            break
        if tok in many:
            current, taken = tok, 0
            out.append(tok)
        elif tok.startswith("-") and tok != "-":
            current = None
            out.append(tok)
        elif current is not None:
            if taken:
                out.append(current)
            out.append(tok)
            taken += 1
        else:
            out.append(tok)
    return out


class _ManyValuesCommand(TyperCommand):
    """A command whose options in MANY_VALUES take several values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_many_values(args))


# ---- progress and summary ---------------------------------------------------------------------


class _StageProgress:
    """One tqdm bar per running stage; a line per finished or skipped stage."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.stage: str | None = None
        self.shown = -1
        self.last = 0.0

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if fraction >= 1.0:
            self.close()
            echo(f"{stage:<8} {message}")
            return
        if self.bar is None or stage != self.stage:
            from tqdm import tqdm

            self.close()
            self.stage = stage
            self.bar = tqdm(
                total=100,
                desc=f"{stage:<8}",
                disable=state.quiet,
                dynamic_ncols=True,
                leave=False,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
            )
        n = int(fraction * 100)
        now = time.monotonic()
        if (n != self.shown and now - self.last > 0.2) or now - self.last > 1.0:
            self.bar.n = n
            self.bar.set_postfix_str(message[-70:], refresh=False)
            self.bar.refresh()
            self.shown, self.last = n, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.stage, self.shown = None, None, -1


def _stage_note(stage: str, extra: dict[str, Any], warnings: list[str]) -> str:
    if stage == "extract":
        faces = extra.get("faces", {})
        return ", ".join(f"{k.upper() if len(k) == 1 else k} {v} faces" for k, v in faces.items())
    if stage == "analyze":
        share = extra.get("uncovered", {}).get("share")
        note = f"{len(warnings)} warning(s)"
        return note + (f", {share:.0%} of target frames outside B's coverage" if share is not None else "")
    if stage == "train" and "step" in extra:
        held = ", ".join(f"{k.removeprefix('holdout_')} {v}" for k, v in extra.get("holdout", {}).items())
        return f"step {extra['step']}, stopped by {extra.get('stopped_by')}" + (
            f"; held-out {held}" if held else ""
        )
    if stage == "convert" and "frames" in extra:
        audio = extra.get("audio")
        return f"{extra['frames']} frames, {extra.get('faces_swapped')} faces swapped" + (
            f", audio {audio}" if audio else ""
        )
    return ""


def _summary_json(ws: Workspace, summary: RunSummary, total_s: float) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "workspace": str(ws.root),
        "ran": summary.ran,
        "skipped": summary.skipped,
        "seconds": summary.seconds,
        "total_seconds": round(total_s, 1),
        "cancelled": summary.cancelled,
        "output": str(summary.output) if summary.output else None,
        "side_by_side": str(summary.side_by_side) if summary.side_by_side else None,
        "report": str(summary.report) if summary.report else None,
        "eval_json": str(ws.eval_json) if summary.eval else None,
        "eval": summary.eval,
        "warnings": summary.warnings,
        "status": {k: asdict(v) for k, v in ws.status().items()},
        "details": {k: {kk: vv for kk, vv in v.items() if kk != "shape"} for k, v in summary.details.items()},
    }


def _print_summary(ws: Workspace, summary: RunSummary, total_s: float) -> None:
    from faceloom.cli_analyze import _eval_text
    from faceloom.workspace import STAGES

    stages = ws.read_state()["stages"]
    status = ws.status()
    echo(f"workspace: {ws.root}")
    for stage in STAGES:
        rec = stages.get(stage, {})
        if stage in summary.ran:
            took = f"{summary.seconds[stage]:7.1f} s"
        elif stage in summary.skipped and status[stage].state == "done":
            took = f"skipped (up to date; took {rec.get('seconds', 0):.1f} s)"
        else:
            took = status[stage].state
        note = _stage_note(stage, rec.get("extra", {}), rec.get("warnings", []))
        echo(f"  {stage:<8} {took}" + (f"   {note}" if note else ""))
    echo(f"  total    {total_s:7.1f} s")
    if summary.output:
        echo(f"output:       {summary.output}")
    if summary.side_by_side:
        echo(f"side by side: {summary.side_by_side}")
    if summary.report:
        echo(f"report:       {summary.report}")
    if summary.eval:
        echo(f"eval:         {ws.eval_json}")
        for line in _eval_text(summary.eval):
            echo(line)
        for name, p in (summary.eval.get("provenance") or {}).items():
            mark = p["watermark"]
            echo(
                f"  label: {name} is marked synthetic (metadata label "
                f"{'present' if p['label'] else 'absent'}, watermark z = {mark['score']})"
            )
    if summary.cancelled:
        echo("cancelled: finished stages are kept; run again to go on")


def _parse_sets(pairs: list[str]) -> dict[str, dict[str, str]]:
    from faceloom.workspace import normalize_section

    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise typer.BadParameter(f"--set wants section.key=value (like convert.color=hist), got {pair!r}")
        out.setdefault(section, {})[name] = value.strip()
    for section, values in out.items():
        normalize_section(section, values)  # refuse a bad --set before anything is written
    return out


def _execute(
    ws: Workspace, only: list[str] | None, strict: bool, as_json: bool, force: bool = False
) -> RunSummary:
    from faceloom.runtime import pin_threads
    from faceloom.workspace import run_workspace

    pin_threads()
    bars = _StageProgress()
    t0 = time.monotonic()
    try:
        summary = run_workspace(ws, only=only, strict=strict, progress=None if as_json else bars, force=force)
    finally:
        bars.close()
    total = time.monotonic() - t0
    for w in summary.warnings:
        warn(w)
    if as_json:
        echo_json(_summary_json(ws, summary, total))
    else:
        _print_summary(ws, summary, total)
    return summary


# ---- faceloom run -----------------------------------------------------------------------------


@app.command(cls=_ManyValuesCommand)
def run(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Workspace folder: made on the first run, reused after.")
    ],
    a: Annotated[
        list[str] | None,
        typer.Option("--a", help="Person A (in the target video): videos, image folders or URLs."),
    ] = None,
    b: Annotated[
        list[str] | None,
        typer.Option("--b", help="Person B (the face put in): videos, image folders or URLs."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="The video to convert (of A; also used as A footage). File or URL."),
    ] = None,
    model: Annotated[ModelChoice | None, typer.Option(help="Architecture (new workspace: lite).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Train this many minutes in all.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Train to this many steps in all.")] = None,
    side_by_side: Annotated[
        bool | None,
        typer.Option(
            "--side-by-side/--no-side-by-side", help="Also write output/side_by_side.mp4 (new workspace: on)."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run just these stages: extract, analyze, train, convert, eval."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run the chosen stages even when they are up to date.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop before training if the analysis warns.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Change a setting of faceloom.toml: section.key=value (convert.color=hist)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Extract -> analyze -> train -> convert -> eval in one workspace; re-runs skip what is up to date.

    A is the person in the target video, B the face put in. Swap only faces whose owners agreed.
    """
    from faceloom.workspace import Workspace

    sets = _parse_sets(set_ or [])
    if Workspace.is_workspace(workspace):
        ws = Workspace.open(workspace)
        if a or b or target:
            ws.set_inputs(a or None, b or None, target)
        train: dict[str, Any] = {}
        if model is not None:
            train["model"] = model
        if minutes is not None:
            train["minutes"] = minutes
        if iterations is not None:
            train["iterations"] = iterations
        if train:
            ws.update_settings("train", train)
        if side_by_side is not None:
            ws.update_settings("convert", {"side_by_side": side_by_side})
    else:
        if not a or not b:
            raise InputError(
                "is not a workspace yet; give --a and --b (and --target VIDEO) to make one", workspace
            )
        ws = Workspace.create(
            workspace,
            a,
            b,
            target,
            model=model or "lite",
            minutes=minutes,
            iterations=iterations,
            side_by_side=True if side_by_side is None else side_by_side,
        )
    for section, values in sets.items():
        ws.update_settings(section, values)
    _execute(ws, list(only) if only else None, strict, as_json, force)


# ---- faceloom demo ----------------------------------------------------------------------------


@app.command(cls=_ManyValuesCommand)
def demo(
    workspace: Annotated[
        Path, typer.Option("--workspace", "--out", "-w", help="Workspace folder of the demo.")
    ] = Path("demo-output"),
    a: Annotated[
        list[str] | None, typer.Option("--a", help="Run on two people's clips: A's clips or folder.")
    ] = None,
    b: Annotated[list[str] | None, typer.Option("--b", help="...and B's clips or folder.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="With --a/--b: the video to convert (default: A's first).")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="Training budget in minutes (default 8).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Train this many steps instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """The whole chain on sample media in about 10 minutes on a 2-core CPU (lite model).

    Without --a/--b: a reenactment of CREMA-D actor 1001, a consenting research subject (A = his
    angry, disgusted, fearful clips; B = his other clips), so no one's identity is changed.
    """
    from faceloom.demo import local_inputs, prepare_demo, sample_inputs

    if bool(a) != bool(b):
        raise InputError("--a and --b go together: two people's clips")
    if a and b:
        inputs = local_inputs(a, b, target)
    else:
        if target is not None:
            raise InputError("--target needs --a and --b")
        inputs = sample_inputs(log=echo)
    if not as_json:
        if inputs.credit:
            echo(f"sample media: {inputs.credit}")
        if inputs.reenactment:
            echo(
                "reenactment: A and B are the same consenting actor (A = angry/disgusted/fearful clips, "
                "B = the others); the chain runs in full, no one's identity is changed"
            )
    ws = prepare_demo(workspace, inputs, minutes=minutes, iterations=iterations)
    summary = _execute(ws, None, False, as_json)
    if not as_json and summary.output:
        echo("")
        echo(f"swapped video:      {summary.output}")
        echo(f"side-by-side video: {summary.side_by_side}")
        echo(f"coverage report:    {summary.report}")
        echo(f"eval numbers:       {ws.eval_json}")
