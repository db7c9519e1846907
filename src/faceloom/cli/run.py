"""`faceloom run` (the whole chain in a workspace folder) and `faceloom demo` (it, on sample media)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from faceloom.cli.formatting import eval_lines
from faceloom.cli.options import Given, offer, settings_options
from faceloom.cli.output import echo, echo_json, warn
from faceloom.cli.progress import Bars
from faceloom.config import ConvertConfig, TrainConfig
from faceloom.errors import InputError
from faceloom.workspace.stages import STAGE_NAMES

if TYPE_CHECKING:
    from faceloom.workspace import RunSummary, Workspace

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


class ManyValuesCommand(TyperCommand):
    """A command whose options in MANY_VALUES take several values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_many_values(args))


# ---- summary -----------------------------------------------------------------------------------


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
        "kept": {k: [str(p) for p in v] for k, v in summary.kept.items()},
        "details": {k: {kk: vv for kk, vv in v.items() if kk != "shape"} for k, v in summary.details.items()},
    }


def _print_summary(ws: Workspace, summary: RunSummary, total_s: float) -> None:
    from faceloom.workspace import STAGES

    stages = ws.read_state()["stages"]
    status = ws.status()
    echo(f"workspace: {ws.root}")
    for stage in STAGES:
        name = stage.name
        rec = stages.get(name, {})
        if name in summary.ran:
            took = f"{summary.seconds[name]:7.1f} s"
        elif name in summary.skipped and status[name].state == "done":
            took = f"skipped (up to date; took {rec.get('seconds', 0):.1f} s)"
        else:
            took = status[name].state
        note = stage.summary(rec.get("extra", {}), rec.get("warnings", []))
        echo(f"  {name:<8} {took}" + (f"   {note}" if note else ""))
    echo(f"  total    {total_s:7.1f} s")
    if summary.output:
        echo(f"output:       {summary.output}")
    if summary.side_by_side:
        echo(f"side by side: {summary.side_by_side}")
    if summary.report:
        echo(f"report:       {summary.report}")
    if summary.eval:
        echo(f"eval:         {ws.eval_json}")
        for line in eval_lines(summary.eval):
            echo(line)
        for name, p in (summary.eval.get("provenance") or {}).items():
            mark, c2pa = p["watermark"], p.get("c2pa") or {}
            credentials = c2pa.get("validation_state", "none") if c2pa.get("present") else "none"
            echo(
                f"  label: {name} is marked synthetic (metadata label "
                f"{'present' if p['label'] else 'absent'}, watermark score {mark['score']}, "
                f"content credentials {credentials})"
            )
    for kind, paths in summary.kept.items():
        echo(f"kept aside ({kind}): " + ", ".join(str(p.relative_to(ws.root)) for p in paths))
    if summary.cancelled:
        echo("cancelled: finished stages are kept; run again to go on")


def _parse_sets(pairs: list[str]) -> dict[str, dict[str, str]]:
    from faceloom.workspace.settings_file import normalize_section

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
    bars = Bars(percent=True)
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


RUN_TRAIN_OPTIONS = offer(
    TrainConfig,
    only=["model", "minutes", "iterations"],
    help={"minutes": "Train this many minutes in all.", "iterations": "Train to this many steps in all."},
)


@settings_options(
    RUN_TRAIN_OPTIONS,
    offer(ConvertConfig, only=["side_by_side"], help={"side_by_side": "Also write output/side_by_side.mp4."}),
)
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
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help=f"Run just these stages: {', '.join(STAGE_NAMES)}."),
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
    *,
    given: Given,
) -> None:
    """Extract -> analyze -> train -> convert -> eval in one workspace; re-runs skip what is up to date.

    A is the person in the target video, B the face put in. Swap only faces whose owners agreed.
    A new workspace takes every setting's default (faceloom.config), as `faceloom train` and
    `faceloom convert` do; a setting that shapes the model keeps the old model as model.prev-... .
    """
    from faceloom.workspace import Workspace

    sets = _parse_sets(set_ or [])
    typed = {"train": given.of(TrainConfig), "convert": given.of(ConvertConfig)}
    for section, values in typed.items():  # refuse a bad value by its flag before anything is written
        if values:
            given.config(TrainConfig if section == "train" else ConvertConfig)
    if Workspace.is_workspace(workspace):
        ws = Workspace.open(workspace)
        if a or b or target:
            ws.set_inputs(a or None, b or None, target)
        for section, values in typed.items():
            if values:
                ws.update_settings(section, values)
    else:
        if not a or not b:
            raise InputError(
                "is not a workspace yet; give --a and --b (and --target VIDEO) to make one", workspace
            )
        ws = Workspace.create(workspace, a, b, target, settings=typed)
    for section, values in sets.items():
        ws.update_settings(section, values)
    _execute(ws, list(only) if only else None, strict, as_json, force)


# ---- faceloom demo ----------------------------------------------------------------------------


@settings_options(
    offer(
        TrainConfig,
        only=["minutes", "iterations"],
        help={
            "minutes": "Training budget in minutes (demo: 8).",
            "iterations": "Train this many steps instead.",
        },
    )
)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    *,
    given: Given,
) -> None:
    """The whole chain on sample media in about 10 minutes on a 2-core CPU (lite model).

    Without --a/--b: a reenactment of CREMA-D actor 1001, a consenting research subject (A = his
    angry, disgusted, fearful clips; B = his other clips), so no one's identity is changed.
    """
    from faceloom.workspace.demo import local_inputs, prepare_demo, sample_inputs

    budget = given.of(TrainConfig)
    minutes, iterations = budget.get("minutes"), budget.get("iterations")

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
