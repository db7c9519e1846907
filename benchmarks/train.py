"""Training speed and time to quality; prints one JSON object (progress goes to stderr).

Speed first (skip it with --no-speed): faces/s at batch 16 per side, both sides counted, of
``original`` in fp32 and bf16 and of the default model (``loom``), and ``original`` against the
textbook plain-torch build in alternating windows (:mod:`benchmarks.train_speed`, which has the
full set of speed measurements). Target: ``original`` at 2x the faces/s of faceswap's best.

Time to quality: held-out masked SSIM (one crop, one mask for every model) against training time.
Trains `original`, the default model (`loom`), and `loom` started `--init-from` a model trained
on another pair, each for the longest of --minutes, scoring held-out faces every --every seconds
of training time (scoring time is not counted). A = GRID speaker g3, B = the CREMA-D actor; the
other pair for --init-from is GRID g1 <-> g2. The prior for --init-from trains first; then the
three runs take turns of --slice seconds of training each, so swings in host speed hit all three
alike.

Targets: the default model reaches original's final SSIM in a quarter of its time; --init-from
halves that again. Usage: python benchmarks/train.py [--minutes 5,10,20] [--every 30] [--no-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import add_data_argument  # noqa: E402
from faceloom.runtime import pin_threads, quiet_native_logs  # noqa: E402

quiet_native_logs()
pin_threads()

import numpy as np  # noqa: E402

from faceloom.config import TrainConfig  # noqa: E402
from faceloom.evaluation.crops import common_holdout_ssim  # noqa: E402
from faceloom.extract import extract  # noqa: E402
from faceloom.faces.faceset import Faceset  # noqa: E402
from faceloom.train.prefetch import Prefetcher, prefetch_plan  # noqa: E402
from faceloom.train.trainer import Trainer  # noqa: E402


def score(trainer: Trainer, fs: dict[str, Faceset]) -> float:
    sides = []
    for s in ("a", "b"):
        held = set(trainer.holdout[s].holdout_ids)
        records = [r for r in fs[s].records if r.id in held][:48]
        sides.append(common_holdout_ssim(trainer.inference_model, fs[s], records, s))
    trainer.model.train()
    return float(np.mean(sides))


class TimedRun:
    """One model training on a pair, scored on held-out faces every ``every`` seconds of training.

    Only the training steps are timed (scoring is not). :func:`interleave` advances several runs in
    turn, so a change in host speed (this benchmark's 2-core VMs swing by up to 2x for minutes at a
    time) slows every model alike instead of whichever happened to run then.
    """

    def __init__(
        self, a: Path, b: Path, out: Path, config: TrainConfig, checkpoints: list[float], every: float
    ) -> None:
        self.trainer = Trainer(a, b, out, config)
        self.fs = {"a": Faceset.load(a), "b": Faceset.load(b)}
        self.prefetch = Prefetcher(self.trainer._batches, 0, *prefetch_plan(self.trainer.device.type))
        self.curve = [(0.0, score(self.trainer, self.fs))]
        self.trained_s, self.next_eval, self.steps, self.every = 0.0, every, 0, every
        self.checkpoints = checkpoints
        self.end = max(checkpoints) * 60
        self.marks = sorted(m * 60 for m in checkpoints)

    @property
    def done(self) -> bool:
        return self.trained_s >= self.end

    def advance(self, seconds: float) -> None:
        """Train for about ``seconds`` more (never past the end), scoring when due."""
        stop = min(self.trained_s + seconds, self.end)
        trainer = self.trainer
        while self.trained_s < stop:
            t0 = time.perf_counter()
            trainer.train_step(trainer.step, self.prefetch.get(trainer.step))
            trainer.step += 1
            self.steps += 1
            self.trained_s += time.perf_counter() - t0
            crossed = [m for m in self.marks if m <= self.trained_s]
            if self.trained_s >= self.next_eval or crossed:
                self.curve.append((round(self.trained_s, 1), score(trainer, self.fs)))
                self.next_eval = self.trained_s + self.every
                self.marks = [m for m in self.marks if m > self.trained_s]

    def result(self) -> dict:
        return {
            "steps": self.steps,
            "faces_per_s": round(self.steps * 2 * self.trainer.batch_size / self.trained_s, 1),
            "ssim_at": {f"{m:g}min": _value_at(self.curve, m * 60) for m in self.checkpoints},
            "curve": self.curve,
            "model": self.trainer.inference_model,
        }


def interleave(runs: dict[str, TimedRun], slice_s: float) -> dict[str, dict]:
    """Advance the runs in turn, ``slice_s`` seconds of training each, until all are done."""
    try:
        while not all(r.done for r in runs.values()):
            for r in runs.values():
                if not r.done:
                    r.advance(slice_s)
            progress = ", ".join(
                f"{n} {r.trained_s / 60:.1f} min SSIM {r.curve[-1][1]:.3f}" for n, r in runs.items()
            )
            print(f"[train benchmark] {progress}", file=sys.stderr, flush=True)
    finally:
        for r in runs.values():
            r.prefetch.close()
    return {name: r.result() for name, r in runs.items()}


def _value_at(curve: list[tuple[float, float]], t: float) -> float:
    """The first score taken at or after ``t`` seconds of training (one is forced at each mark)."""
    after = [v for s, v in curve if s >= t - 1e-6]
    return round(after[0], 4) if after else float("nan")


def time_to_reach(curve: list[tuple[float, float]], level: float) -> float | None:
    for s, v in curve:
        if round(v, 4) >= level:  # ``level`` is a rounded ssim_at value
            return s
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_data_argument(parser)
    parser.add_argument("--minutes", default="5,10,20")
    parser.add_argument("--every", type=float, default=30.0, help="seconds of training between scores")
    parser.add_argument(
        "--slice", type=float, default=10.0, help="seconds of training per turn of the interleaved runs"
    )
    parser.add_argument(
        "--prior-minutes", type=float, default=10.0, help="training of the --init-from source"
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the faces/s measurements")
    args = parser.parse_args()
    speed = None
    if not args.no_speed:
        from benchmarks.train_speed import measure

        print("[train benchmark] speed: original fp32 and bf16, loom, original vs textbook", file=sys.stderr)
        speed = measure(["--models", "original,loom", "--windows", "3", "--no-ablations", "--no-inference"])
    checkpoints = [float(m) for m in args.minutes.split(",")]
    grid, crema = args.data / "grid", sorted((args.data / "crema-d").glob("*.flv"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extract([grid / "id2_vcd_swwp2s.mpg", grid / "pwij3p.mpg"], root / "a")
        extract(crema, root / "b")
        extract([grid / "bbaf2n.mpg"], root / "other_a")
        extract([grid / "brbk7n.mpg"], root / "other_b")
        base: dict[str, Any] = {"save_every": 0, "preview_every": 0, "eval_every": 0, "log_every": 10**9}
        prior = interleave(
            {
                "prior": TimedRun(
                    root / "other_a",
                    root / "other_b",
                    root / "prior",
                    TrainConfig(model="loom", **base),
                    [args.prior_minutes],
                    1e9,
                )
            },
            args.slice,
        )["prior"]
        from faceloom.train.modeldir import ModelDir

        mdir = ModelDir.load(root / "prior")  # the prior was trained in memory: save it for --init-from
        mdir.save_checkpoint(prior["steps"], prior["model"].state_dict(), None, {})
        configs = {
            "original": TrainConfig(model="original", **base),
            "loom": TrainConfig(model="loom", **base),
            "loom_init_from": TrainConfig(model="loom", init_from=str(root / "prior"), **base),
        }
        runs = {
            name: TimedRun(root / "a", root / "b", root / name, cfg, checkpoints, args.every)
            for name, cfg in configs.items()
        }
        results = interleave(runs, args.slice)
    final_key = f"{max(checkpoints):g}min"
    bar = results["original"]["ssim_at"][final_key]
    report: dict[str, object] = {
        "benchmark": "train_time_to_quality",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "metric": "held-out masked SSIM, face crop 64 px, landmark hull mask, mean of A and B",
        "minutes": checkpoints,
        "prior_minutes_for_init_from": args.prior_minutes,
        "interleaved_slice_s": args.slice,
    }
    for name, r in results.items():
        reach = time_to_reach(r["curve"], bar)
        report[name] = {
            "faces_per_s": r["faces_per_s"],
            "steps": r["steps"],
            "ssim_at": r["ssim_at"],
            "seconds_to_original_final": reach,
            "curve": r["curve"],
        }
    orig_time = max(checkpoints) * 60
    for name in ("loom", "loom_init_from"):
        reach = report[name]["seconds_to_original_final"]  # type: ignore[index]
        report[name]["share_of_original_time"] = round(reach / orig_time, 3) if reach else None  # type: ignore[index]
    report["targets"] = {"loom_share": 0.25, "loom_init_from_share": 0.125}
    if speed is not None:
        keys = ("machine", "train", "versus_textbook_original", "ratios", "targets")
        report["speed"] = {k: speed[k] for k in keys}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
