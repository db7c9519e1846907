"""Time to quality: held-out masked SSIM (one crop, one mask for every model) against training time.

Trains `original`, the default model (`loom`), and `loom` started `--init-from` a model trained
on another pair, each for the longest of --minutes, scoring held-out faces every --every seconds
of training time (scoring time is not counted). A = GRID speaker g3, B = the CREMA-D actor; the
other pair for --init-from is GRID g1 <-> g2. Prints one JSON object.

Targets: the default model reaches original's final SSIM in a quarter of its time; --init-from
halves that again. Usage: python benchmarks/train.py [--minutes 5,10,20] [--every 30]
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

from faceloom.runtime import pin_threads, quiet_native_logs  # noqa: E402

quiet_native_logs()
pin_threads()

import numpy as np  # noqa: E402

from faceloom.config import TrainConfig  # noqa: E402
from faceloom.extract import extract  # noqa: E402
from faceloom.faces.faceset import Faceset  # noqa: E402
from faceloom.train.data import Prefetcher  # noqa: E402
from faceloom.train.evaluate import common_holdout_ssim  # noqa: E402
from faceloom.train.trainer import Trainer  # noqa: E402


def score(trainer: Trainer, fs: dict[str, Faceset]) -> float:
    sides = []
    for s in ("a", "b"):
        held = set(trainer.holdout[s].holdout_ids)
        records = [r for r in fs[s].records if r.id in held][:48]
        sides.append(common_holdout_ssim(trainer.model, fs[s], records, s))
    trainer.model.train()
    return float(np.mean(sides))


def timed_run(
    a: Path, b: Path, out: Path, config: TrainConfig, checkpoints: list[float], every: float
) -> dict:
    trainer = Trainer(a, b, out, config)
    fs = {"a": Faceset.load(a), "b": Faceset.load(b)}
    prefetch = Prefetcher(trainer._batches, 0, depth=3)
    curve = [(0.0, score(trainer, fs))]
    trained_s, next_eval, steps = 0.0, every, 0
    end = max(checkpoints) * 60
    marks = sorted(m * 60 for m in checkpoints)
    try:
        while trained_s < end:
            t0 = time.perf_counter()
            trainer.train_step(trainer.step, prefetch.get(trainer.step))
            trainer.step += 1
            steps += 1
            trained_s += time.perf_counter() - t0
            crossed = [m for m in marks if m <= trained_s]
            if trained_s >= next_eval or crossed:
                curve.append((round(trained_s, 1), score(trainer, fs)))
                next_eval = trained_s + every
                marks = [m for m in marks if m > trained_s]
    finally:
        prefetch.close()
    at = {f"{m:g}min": _value_at(curve, m * 60) for m in checkpoints}
    return {
        "steps": steps,
        "faces_per_s": round(steps * 2 * trainer.batch_size / trained_s, 1),
        "ssim_at": at,
        "curve": curve,
        "model": trainer.model,
    }


def _value_at(curve: list[tuple[float, float]], t: float) -> float:
    """The first score taken at or after ``t`` seconds of training (one is forced at each mark)."""
    after = [v for s, v in curve if s >= t - 1e-6]
    return round(after[0], 4) if after else float("nan")


def time_to_reach(curve: list[tuple[float, float]], level: float) -> float | None:
    for s, v in curve:
        if v >= level:
            return s
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("FACELOOM_TEST_DATA", REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--minutes", default="5,10,20")
    parser.add_argument("--every", type=float, default=30.0, help="seconds of training between scores")
    parser.add_argument(
        "--prior-minutes", type=float, default=10.0, help="training of the --init-from source"
    )
    args = parser.parse_args()
    checkpoints = [float(m) for m in args.minutes.split(",")]
    grid, crema = args.data / "grid", sorted((args.data / "crema-d").glob("*.flv"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extract([grid / "id2_vcd_swwp2s.mpg", grid / "pwij3p.mpg"], root / "a")
        extract(crema, root / "b")
        extract([grid / "bbaf2n.mpg"], root / "other_a")
        extract([grid / "brbk7n.mpg"], root / "other_b")
        base: dict[str, Any] = {"save_every": 0, "preview_every": 0, "eval_every": 0, "log_every": 10**9}
        results: dict[str, dict] = {}
        runs = [
            ("original", TrainConfig(model="original", **base)),
            ("loom", TrainConfig(model="loom", **base)),
        ]
        for name, cfg in runs:
            results[name] = timed_run(root / "a", root / "b", root / name, cfg, checkpoints, args.every)
        prior = timed_run(
            root / "other_a",
            root / "other_b",
            root / "prior",
            TrainConfig(model="loom", **base),
            [args.prior_minutes],
            1e9,
        )
        from faceloom.train.modeldir import ModelDir

        mdir = ModelDir.load(root / "prior")  # the prior was trained in memory: save it for --init-from
        mdir.save_checkpoint(prior["steps"], prior["model"].state_dict(), None, {})
        init_cfg = TrainConfig(model="loom", init_from=str(root / "prior"), **base)
        results["loom_init_from"] = timed_run(
            root / "a", root / "b", root / "init", init_cfg, checkpoints, args.every
        )
    final_key = f"{max(checkpoints):g}min"
    bar = results["original"]["ssim_at"][final_key]
    report: dict[str, object] = {
        "benchmark": "train_time_to_quality",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "metric": "held-out masked SSIM, face crop 64 px, landmark hull mask, mean of A and B",
        "minutes": checkpoints,
        "prior_minutes_for_init_from": args.prior_minutes,
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
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
