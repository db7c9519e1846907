"""The extract stage: faces of A (their footage and the target), of B, and of the target alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceloom.config import ExtractConfig
from faceloom.config.meta import fingerprint
from faceloom.errors import InputError
from faceloom.fsutil import move_aside
from faceloom.progress import Progress
from faceloom.workspace.inputs import input_fingerprint
from faceloom.workspace.stages.base import Outcome, Stage, StageRun

if TYPE_CHECKING:
    from faceloom.workspace.workspace import Workspace

A_LABEL = "person A (--a)"
B_LABEL = "person B (--b)"
TARGET_LABEL = "target (--target)"


def target_extract_config(config: ExtractConfig) -> ExtractConfig:
    """The target is read frame by frame with every face kept, so convert can use its faceset."""
    return replace(config, every_n=1, blur_threshold=0.0, identity_refs=())


class ExtractStage(Stage):
    name = "extract"
    order = 10
    configs = (ExtractConfig,)
    note = "faceloom extract: applies to A and B; the target is always read frame by frame."

    def fingerprint(self, ws: Workspace) -> str:
        cfg = ws.extract_config()
        target = ws.target
        return fingerprint(
            {
                "a": [input_fingerprint(ws, x) for x in ws.inputs_a],
                "b": [input_fingerprint(ws, x) for x in ws.inputs_b],
                "target": input_fingerprint(ws, target) if target else None,
                "extract": cfg.output_fingerprint(),
                "target_extract": target_extract_config(cfg).output_fingerprint(),
            }
        )

    def outputs_exist(self, ws: Workspace) -> bool:
        sets = [ws.faceset_a, ws.faceset_b] + ([ws.faceset_target] if ws.target else [])
        return all((p / "faceset.json").is_file() for p in sets)

    def run(self, run: StageRun) -> Outcome:
        from faceloom.extract import extract
        from faceloom.media.sources import classify, collect_sources

        ws = run.ws

        def local(raws: list[str], label: str) -> list[Path]:
            try:
                return [run.local(x) for x in raws]
            except InputError as exc:
                raise InputError(f"{label}: {exc}") from exc

        a = local(ws.inputs_a, A_LABEL)
        b = local(ws.inputs_b, B_LABEL)
        target = local([ws.target], TARGET_LABEL)[0] if ws.target else None
        if target is not None and (target.is_dir() or classify(target) != "video"):
            raise InputError(f"{TARGET_LABEL}: must be a video file", target)
        cfg = ws.extract_config()
        jobs: list[tuple[str, list[Path], Path, ExtractConfig]] = [
            (A_LABEL, a + ([target] if target else []), ws.faceset_a, cfg),
            (B_LABEL, b, ws.faceset_b, cfg),
        ]
        if target is not None:
            jobs.append((TARGET_LABEL, [target], ws.faceset_target, target_extract_config(cfg)))
        elif ws.faceset_target.exists():
            move_aside(ws.faceset_target)
        outcome = Outcome()
        counts: dict[str, int] = {}
        for j, (label, inputs, out, config) in enumerate(jobs):
            run.check_cancel()
            try:
                sources = [str(s.path) for s in collect_sources(inputs)]
                kept = _prepare_faceset(out, inputs, config)
                if kept is not None:
                    outcome.warnings.append(
                        f"extract: {label}: the faceset was extracted with other crop settings; "
                        f"kept it as {kept.name}"
                    )
                position = {p: i for i, p in enumerate(sources)}

                def on_frames(
                    p: Progress, j: int = j, label: str = label, position: dict[str, int] = position
                ) -> None:
                    k = position.get(p.task, 0)
                    part = (k + (p.fraction or 0.0)) / max(len(position), 1)
                    run.report(
                        (j + part) / len(jobs), f"{label}: {Path(p.task).name} {p.done:.0f}/{p.total:.0f}"
                    )

                result = extract(inputs, out, config, progress=on_frames, cancel=run.cancel)
            except InputError as exc:
                raise InputError(f"{label}: {exc}") from exc
            outcome.warnings += [f"{label}: {w}" for w in result.warnings]
            counts[out.name] = sum(s.faces for s in result.sources)
        outcome.extra = {"faces": counts}
        return outcome

    def summary(self, extra: dict[str, Any], warnings: list[str]) -> str:
        faces = extra.get("faces", {})
        return ", ".join(f"{k.upper() if len(k) == 1 else k} {v} faces" for k, v in faces.items())


def _prepare_faceset(out: Path, inputs: list[Path], config: ExtractConfig) -> Path | None:
    """Make ``out`` fit for extract: drop faces of inputs no longer listed; keep a faceset of another
    crop size or image format aside (returned) and start a new one."""
    from faceloom.faces.faceset import Faceset
    from faceloom.media.sources import collect_sources

    if not Faceset.is_faceset(out):
        if out.exists() and any(out.iterdir()):
            return move_aside(out)  # a folder left by a kill before the faceset header was written
        return None
    fs = Faceset.load(out)
    if fs.size != config.size or fs.image_format != config.image_format:
        return move_aside(out, f"{fs.size}px")
    keys = {fs.find_source(s.path) for s in collect_sources(inputs)}
    gone = [k for k in fs.sources if k not in keys]
    if gone:
        for k in gone:
            fs.header["sources"].pop(k, None)
        fs.remove({r.id for r in fs.records if r.source in gone})
    return None
