"""The eval stage: the model's scores on held-out faces, flicker and provenance of the output."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceloom.config import EvalConfig
from faceloom.config.meta import fingerprint
from faceloom.faces.faceset import Faceset
from faceloom.fsutil import atomic_write_text, content_fingerprint, ensure_dir
from faceloom.progress import Progress
from faceloom.workspace.stages.base import Outcome, Stage, StageRun
from faceloom.workspace.stages.convert import model_fingerprint

if TYPE_CHECKING:
    from faceloom.workspace.workspace import Workspace


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


class EvalStage(Stage):
    name = "eval"
    order = 50
    upstream = ("extract", "train", "convert")
    configs = (EvalConfig,)
    note = "faceloom eval: scores of the model on held-out faces and flicker of output/swapped.mp4."

    def reads(self, ws: Workspace) -> tuple[str, ...]:
        """It reads convert's video only when there is a target."""
        return tuple(u for u in self.upstream if u != "convert" or ws.target)

    def model_key(self, ws: Workspace) -> str:
        """What the held-out scores depend on (they are cached under this key)."""
        ec = ws.eval_config().output_fingerprint()
        return fingerprint(
            {
                "model": model_fingerprint(ws),
                "a": Faceset.table_fingerprint(ws.faceset_a),
                "b": Faceset.table_fingerprint(ws.faceset_b),
                "eval": ec,
            }
        )

    def fingerprint(self, ws: Workspace) -> str:
        videos = [ws.output_video] + ([ws.side_by_side_video] if ws.convert_config().side_by_side else [])
        video = [content_fingerprint(v) if v.is_file() else "" for v in videos] if ws.target else None
        return fingerprint({"model": self.model_key(ws), "video": video})

    def outputs_exist(self, ws: Workspace) -> bool:
        return ws.eval_json.is_file()

    def run(self, run: StageRun) -> Outcome:
        from faceloom.evaluation import evaluate, video_flicker
        from faceloom.provenance import verify

        ws = run.ws
        ec = ws.eval_config()
        cache_path = ws.eval_json.parent / "model_eval.json"
        key = self.model_key(ws)
        cached = _read_json(cache_path)
        if cached is not None and cached.get("key") == key:
            result = copy.deepcopy(cached["result"])
        else:
            run.report(0.05, "scoring the model on held-out faces")
            result = evaluate(ws.model_dir, ws.faceset_a, ws.faceset_b, config=ec)
            ensure_dir(cache_path.parent)
            atomic_write_text(cache_path, json.dumps({"key": key, "result": result}, default=str))
        run.check_cancel()
        if ws.target and ws.output_video.is_file():
            run.report(0.6, "measuring flicker of the swapped video")
            source = run.local(ws.target)

            def on_frames(p: Progress) -> None:
                run.report(
                    0.6 + 0.35 * (p.fraction or 0.0), f"flicker: frame {p.done:.0f}/{p.total or 0:.0f}"
                )

            video = video_flicker(ws.output_video, source, ec.detector, on_frames)
            result["warnings"] = list(result.get("warnings", [])) + list(video.pop("warnings", []))
            result["video"] = video
            result["provenance"] = {
                p.name: verify(p).to_dict() for p in (ws.output_video, ws.side_by_side_video) if p.is_file()
            }
        atomic_write_text(ws.eval_json, json.dumps(result, indent=1, default=str))
        return Outcome(warnings=[f"eval: {w}" for w in result.get("warnings", [])])
