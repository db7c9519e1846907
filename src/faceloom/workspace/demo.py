"""`faceloom demo`: the whole chain (extract, analyze, train, convert with audio, eval, label) on
sample media, sized for a 2-core CPU in about ten minutes.

With no arguments it is a *reenactment* of one consenting research subject, CREMA-D actor 1001:
A = his angry, disgusted and fearful clips (the angry one is the target video), B = his happy,
neutral and sad ones. Faces are swapped, but no one's identity changes. ``--a``/``--b`` run the
same demo on two people's local clips instead (swap only faces whose owners agreed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceloom.errors import InputError
from faceloom.workspace.workspace import Workspace

DEMO_MINUTES = 8.0
"""Training budget of the demo: with extraction, analysis, conversion and eval about 10 minutes on
two CPU cores."""
DEMO_SETTINGS: dict[str, dict[str, Any]] = {"train": {"model": "lite"}, "convert": {"side_by_side": True}}
"""What the demo sets beside the defaults of faceloom.config. ``lite`` stays at its default 64 px:
in the demo's 8 minutes (benchmarks/quality.py --pair demo --arms lite_64,lite_128) 64 px made 463
steps and swaps as detailed as the real faces at that side (swap sharpness 1.04 / 0.91, video 0.75),
128 px made 125 steps and a blur (0.24 / 0.28, video 0.47)."""
DEFAULT_WORKSPACE = Path("demo-output")
A_EMOTIONS = ("ANG", "DIS", "FEA")
"""CREMA-D emotion codes of the clips that play person A in the one-person demo."""


@dataclass(frozen=True)
class DemoInputs:
    a: list[str]
    b: list[str]
    target: str
    reenactment: bool
    """A and B are the same person: the chain runs, no identity is changed."""
    credit: str | None = None


def _emotion(path: Path) -> str:
    parts = path.stem.split("_")
    return parts[2] if len(parts) >= 3 else ""


def split_reenactment(clips: list[Path]) -> DemoInputs:
    """The one-person demo's roles: A = the ANG/DIS/FEA clips (target: the first), B = the others."""
    ordered = sorted(clips, key=lambda p: p.name)
    a = [p for p in ordered if _emotion(p) in A_EMOTIONS]
    b = [p for p in ordered if _emotion(p) not in A_EMOTIONS]
    if not a or not b:
        raise InputError(
            f"sample clips need both {'/'.join(A_EMOTIONS)} clips (A) and others (B); "
            f"got {', '.join(p.name for p in ordered) or 'none'}"
        )
    return DemoInputs([str(p) for p in a], [str(p) for p in b], str(a[0]), reenactment=True)


def sample_inputs(log: Callable[[str], None] | None = None) -> DemoInputs:
    """Fetch (once, cached) the six CREMA-D clips of actor 1001 and split them for the reenactment."""
    from dataclasses import replace

    from faceloom.workspace.sample_media import CREDIT, fetch_sample_media

    return replace(split_reenactment(fetch_sample_media(log=log)), credit=CREDIT)


def local_inputs(a: list[str], b: list[str], target: str | None = None) -> DemoInputs:
    """Two people's local clips; the target is ``target`` or else A's first video."""
    from faceloom.media.sources import collect_sources

    if target is None:
        videos = [s.path for s in collect_sources(a) if s.kind == "video"]
        if not videos:
            raise InputError("--a holds no video to use as the target; give --target VIDEO")
        target = str(videos[0])
    return DemoInputs(list(a), list(b), target, reenactment=False)


def prepare_demo(
    workspace: str | Path,
    inputs: DemoInputs,
    *,
    minutes: float | None = None,
    iterations: int | None = None,
) -> Workspace:
    """The demo's workspace: made with the demo's preset (:data:`DEMO_SETTINGS`: the ``lite`` model,
    which learns most in a few CPU minutes, and a side-by-side video) and its time budget, or reopened
    (a re-run skips what is done). ``minutes`` / ``iterations`` replace the training budget."""
    budget: dict[str, float | int | None] = {}
    if iterations is not None:
        budget = {"iterations": iterations, "minutes": minutes}
    elif minutes is not None:
        budget = {"minutes": minutes, "iterations": None}
    if Workspace.is_workspace(workspace):
        ws = Workspace.open(workspace)
        ws.set_inputs(inputs.a, inputs.b, inputs.target)
        if budget:
            ws.update_settings("train", budget)
        return ws
    return Workspace.create(
        workspace,
        inputs.a,
        inputs.b,
        inputs.target,
        settings=DEMO_SETTINGS,
        minutes=minutes if budget else DEMO_MINUTES,
        iterations=iterations,
    )


__all__ = [
    "DEFAULT_WORKSPACE",
    "DEMO_MINUTES",
    "DEMO_SETTINGS",
    "DemoInputs",
    "local_inputs",
    "prepare_demo",
    "sample_inputs",
    "split_reenactment",
]
