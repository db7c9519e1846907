"""The train stage: train (or continue) the workspace's model; never delete a trained one.

A trained model is continued whenever the settings that shape it (``shapes_model`` in
:mod:`faceloom.config.train`) and its facesets are the ones it was trained with: any other change
(stop rules, cadences, warp, learning rate, weight average, device, ...) goes on from the last
checkpoint. When a shaping setting or a faceset changed, the old model is renamed
``model.prev-<step>-<time>`` and kept, and a new one is trained.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceloom.config import EarlyStopConfig, TrainConfig
from faceloom.config.meta import changed_shape, fingerprint
from faceloom.errors import InputError
from faceloom.faces.faceset import Faceset
from faceloom.fsutil import move_aside
from faceloom.progress import Cancelled, Progress
from faceloom.workspace.stages.base import Outcome, Stage, StageRun
from faceloom.workspace.state import running_record

if TYPE_CHECKING:
    from faceloom.workspace.workspace import Workspace

NO_STOP_RULE_MINUTES = 7 * 24 * 60.0
"""The trainer's time limit when the only stop rule is the held-out score levelling off."""
STATE_SAVE_EVERY_S = 15.0


class Plateau:
    """Says when the held-out score (mean masked SSIM of both sides) has stopped improving."""

    def __init__(self, config: EarlyStopConfig) -> None:
        self.config = config
        self.best = -math.inf
        self.bad = 0
        self.last_step = -1
        self.stopped = False

    def update(self, step: int, holdout: dict[str, float], eval_every: int) -> bool:
        due = bool(eval_every) and step % eval_every == 0 and step != self.last_step
        if not self.config.patience or not holdout or not due:
            return False
        self.last_step = step
        score = sum(holdout.values()) / len(holdout)
        if score > self.best + self.config.min_delta:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
        self.stopped = self.bad >= self.config.patience
        return self.stopped


def why_new_model(model_dir: Path, config: TrainConfig, faceset_a: Path, faceset_b: Path) -> str | None:
    """Why the model in ``model_dir`` cannot be continued with ``config`` on these facesets (a
    sentence naming the setting or the faceset), or None when it can."""
    from faceloom.train.modeldir import ModelDir

    meta = ModelDir.load(model_dir).meta
    saved = TrainConfig.from_dict(meta.get("train", {}))
    changed = changed_shape(saved, config)
    if changed:
        info = changed[0]
        return (
            f"{info.key} changed ({getattr(saved, info.name)!r} -> {getattr(config, info.name)!r}), "
            "which shapes the model"
        )
    for side, path in (("a", faceset_a), ("b", faceset_b)):
        recorded = meta.get("facesets", {}).get(side, {}).get("fingerprint")
        if recorded != Faceset.load(path).ids_fingerprint():
            return f"the faces of {side.upper()} changed since the model was trained"
    return None


class TrainStage(Stage):
    name = "train"
    order = 30
    upstream = ("extract",)
    configs = (TrainConfig, EarlyStopConfig)
    note = (
        "faceloom train: stops at iterations (total steps) or minutes (total), or when the held-out "
        "score gains less than min_delta over patience evaluations (every eval_every steps; 0 = off). "
        "Settings marked 'shapes the model' start a new model (the old one is kept as model.prev-...); "
        "any other change continues training from the last checkpoint."
    )

    def fingerprint(self, ws: Workspace) -> str:
        return fingerprint(
            {
                "a": Faceset.table_fingerprint(ws.faceset_a),
                "b": Faceset.table_fingerprint(ws.faceset_b),
                "train": ws.train_config().output_fingerprint(),
                "early_stop": ws.early_stop().to_dict(),
            }
        )

    def outputs_exist(self, ws: Workspace) -> bool:
        return (ws.model_dir / "model.json").is_file()

    def run(self, run: StageRun) -> Outcome:
        from faceloom.train.modeldir import ModelDir
        from faceloom.train.trainer import StepReport, train

        ws = run.ws
        tc, es = ws.train_config(), ws.early_stop()
        if tc.iterations is None and tc.minutes is None and not es.patience:
            raise InputError("no stop rule for training: set --iterations, --minutes or train.patience > 0")
        outcome = Outcome()
        previous = ws.state.record("train")
        run.extra = dict(previous.get("extra", {}))  # kept if this run fails before it trains
        resume = ModelDir.exists(ws.model_dir)
        if resume:
            why = why_new_model(ws.model_dir, tc, ws.faceset_a, ws.faceset_b)
            if why is not None:
                step = ModelDir.load(ws.model_dir).step
                kept = move_aside(ws.model_dir, f"{step}")
                outcome.warnings.append(f"train: {why}: kept the model of step {step} as {kept.name}")
                resume = False
        elif ws.model_dir.exists() and any(ws.model_dir.iterdir()):
            move_aside(ws.model_dir)  # a folder left before model.json was ever written
        prior = previous.get("extra", {}) if resume else {}
        run.extra = {"train_seconds": float(prior.get("train_seconds", 0.0))}
        ws.state.write("train", running_record(run.extra, previous))
        base_s = run.extra["train_seconds"]
        step0 = ModelDir.load(ws.model_dir).step if resume else 0
        left_iters = tc.iterations - step0 if tc.iterations is not None else None
        left_minutes = tc.minutes - base_s / 60.0 if tc.minutes is not None else None
        if (left_iters is not None and left_iters <= 0) or (left_minutes is not None and left_minutes <= 0):
            rule = "iterations" if left_iters is not None and left_iters <= 0 else "minutes"
            outcome.extra = {**prior, **run.extra, "step": step0, "stopped_by": rule}
            return outcome
        if left_iters is None and left_minutes is None:
            left_minutes = NO_STOP_RULE_MINUTES
        config = replace(tc, iterations=left_iters, minutes=left_minutes)
        stop = threading.Event()
        plateau = Plateau(es)
        saved_at = [time.monotonic()]

        def on_step(p: Progress) -> None:
            r: StepReport = p.detail
            run.extra["train_seconds"] = base_s + r.elapsed_s
            if plateau.update(r.step, r.holdout, tc.eval_every) or run.cancel.is_set():
                stop.set()
            parts = []
            if tc.iterations:
                parts.append(r.step / tc.iterations)
            if tc.minutes:
                parts.append(run.extra["train_seconds"] / (tc.minutes * 60.0))
            losses = " ".join(f"{k} {v:.4f}" for k, v in r.losses.items() if k in ("loss_a", "loss_b"))
            message = f"step {r.step} {losses} {r.faces_per_s:.0f} faces/s, {r.phase}"
            run.report(max(parts, default=0.0), message)
            if time.monotonic() - saved_at[0] >= STATE_SAVE_EVERY_S:
                saved_at[0] = time.monotonic()
                ws.state.write("train", running_record(run.extra, previous))

        spent = [step0 / tc.iterations] if tc.iterations else []
        spent += [base_s / (tc.minutes * 60.0)] if tc.minutes else []
        result = train(
            ws.faceset_a,
            ws.faceset_b,
            ws.model_dir,
            config,
            resume=resume,
            progress=on_step,
            cancel=stop,
            schedule_start=max(spent, default=0.0),
        )
        run.extra["train_seconds"] = base_s + result.seconds
        stopped_by = "plateau" if plateau.stopped else result.stopped_by
        if stopped_by == "cancelled":
            raise Cancelled
        run.extra.update(
            step=result.step,
            stopped_by=stopped_by,
            holdout={k: round(v, 4) for k, v in result.holdout.items()},
            losses={k: round(v, 5) for k, v in result.losses.items() if k.startswith("loss_")},
            faces_per_s=round(result.faces_per_s, 1),
        )
        outcome.warnings += [f"train: {w}" for w in result.warnings]
        outcome.extra = dict(run.extra)
        return outcome

    def summary(self, extra: dict[str, Any], warnings: list[str]) -> str:
        if "step" not in extra:
            return ""
        held = ", ".join(f"{k.removeprefix('holdout_')} {v}" for k, v in extra.get("holdout", {}).items())
        return f"step {extra['step']}, stopped by {extra.get('stopped_by')}" + (
            f"; held-out {held}" if held else ""
        )
