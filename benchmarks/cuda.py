"""Issue 21's CUDA checks on a GPU; prints one JSON object (progress goes to stderr).

Runs ``faceloom train`` in subprocesses on facesets given with ``--a``/``--b`` (extracted elsewhere:
training needs neither mediapipe nor dlib), each stage under a time limit, so one that hangs is
reported and the next still runs:

* ``parity``: ``lite`` in fp32, 3 steps at batch 8, in one process and under torchrun with two
  (sharing the GPU when there is one): the losses of each step, and their largest relative gap.
* ``amp``: ``loom`` at ``--resolution`` (256) with precision ``auto`` (bf16 where the GPU has it)
  and the phased schedule for ``--minutes``, a snapshot every ``--snapshot-every`` steps; for each
  snapshot the swaps' and rebuilds' sharpness (:func:`faceloom.evaluation.evaluate.sharpness_block`,
  at the model's side) and held-out SSIM against its training time, and the first time both swap
  directions reach issue 21's 0.8.
* ``fp16``: ``lite`` at 128 px, 40 steps in fp16 (the trainer's loss scale on).
* ``torchrun``: ``loom`` at ``--resolution`` with AMP for ``--ddp-minutes``, in two processes.
* ``speed``: training faces/s of ``loom`` at each side (AMP), from the last 70% of each run.

``--weights-out DIR`` writes the AMP model's final weights in fp16, in parts of 15 MiB, with its
model.json and log.csv: copied back and joined (:func:`join_parts`), ``faceloom eval`` scores their
identity and pose where dlib and mediapipe are installed.

Every stage's limit is cut to what is left of ``--budget`` seconds (a stage with less than
:data:`MIN_STAGE_S` left is skipped), and ``--json-out`` is rewritten after each stage, so a run
stopped from outside still leaves the stages it finished.

Usage: python benchmarks/cuda.py --a FACESET_A --b FACESET_B [--minutes 3] [--budget 540]
[--json-out FILE] [--weights-out DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
SHARP_TARGET = 0.8
PART_BYTES = 15 * 2**20
MIN_STAGE_S = 20.0
"""A stage is skipped when less than this is left of ``--budget``."""
SIDES_PX = (128, 192, 256, 320)


def log(msg: str) -> None:
    print(f"[cuda] {msg}", file=sys.stderr, flush=True)


class Budget:
    """The seconds left of the whole run; each stage's limit is cut to them."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def limit(self, want: float) -> float:
        return max(0.0, min(want, self.end - time.monotonic()))


def faceloom(
    args: list[str], out: Path, limit_s: float, budget: Budget, ranks: int = 1, port: int = 29517
) -> dict[str, Any]:
    """Run ``faceloom train ... --out out`` (under torchrun when ``ranks`` is 2); its output goes to
    ``out``.txt. Returns the exit code (None when it outran its limit: ``limit_s``, or what is left of
    ``budget``) and the seconds it took, or ``skipped`` when too little of the budget is left."""
    limit_s = budget.limit(limit_s)
    if limit_s < MIN_STAGE_S:
        return {"rc": None, "skipped": True}
    cmd = [*TORCHRUN, "--master-port", str(port), "-m"] if ranks == 2 else [sys.executable, "-m"]
    t0 = time.monotonic()
    with open(out.with_suffix(".txt"), "w") as fh:
        # A new session, so that a stage that hangs can be killed with every process it started.
        proc = subprocess.Popen(
            [*cmd, "faceloom", *args, "--out", str(out)], stdout=fh, stderr=fh, start_new_session=True
        )
        try:
            rc: int | None = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            rc = None
    return {"rc": rc, "wall_s": round(time.monotonic() - t0, 1)}


def log_rows(model_dir: Path) -> list[dict[str, str]]:
    path = model_dir / "log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def speed(model_dir: Path) -> dict[str, Any]:
    """Steps, training time and faces/s (both sides, from the last 70% of the run) of a model dir."""
    rows = log_rows(model_dir)
    if not rows:
        return {"steps": 0}
    meta = json.loads((model_dir / "model.json").read_text())
    batch = meta["train"].get("batch_size") or meta["train_defaults"]["batch_size"]
    end = float(rows[-1]["time_s"])
    late = [r for r in rows if float(r["time_s"]) >= 0.3 * end]
    first, last = late[0], late[-1]
    span = float(last["time_s"]) - float(first["time_s"])
    fps = 2 * batch * (int(last["step"]) - int(first["step"])) / span if span > 0 else None
    return {
        "steps": int(rows[-1]["step"]),
        "train_s": end,
        "batch": batch,
        "faces_per_s": fps and round(fps, 1),
    }


def sharpness_curve(model_dir: Path, points: int) -> list[dict[str, Any]]:
    """Swap and rebuild sharpness and held-out SSIM of up to ``points`` snapshots and the final weights."""
    import numpy as np
    from safetensors.torch import load_file

    from faceloom.config import EvalConfig
    from faceloom.config.choices import SIDES, Side
    from faceloom.evaluation.crops import model_crops, swap_faces
    from faceloom.evaluation.evaluate import held_out_faces, reconstruction_scores, sharpness_block
    from faceloom.faces.faceset import Faceset
    from faceloom.runtime import resolve_device
    from faceloom.train.modeldir import ModelDir
    from faceloom.train.models import model_from

    device = resolve_device("auto")
    mdir = ModelDir.load(model_dir)
    fs: dict[Side, Faceset] = {s: Faceset.load(mdir.meta["facesets"][s]["path"]) for s in SIDES}
    model = model_from(mdir)
    crop, res = model.crop, model.resolution
    held = {s: held_out_faces(mdir.meta, s, fs[s], EvalConfig()).records for s in fs}
    crops = {s: model_crops(fs[s], held[s], crop, res) for s in SIDES}
    faces, marks = {s: crops[s][0] for s in SIDES}, {s: crops[s][1] for s in SIDES}
    times = {int(r["step"]): float(r["time_s"]) for r in log_rows(model_dir)}
    snaps = sorted((model_dir / "snapshots").glob("step_*"))
    if len(snaps) > points:
        snaps = [snaps[round(i)] for i in np.linspace(0, len(snaps) - 1, points)]
    weights = [(int(p.name.split("_")[1]), p / "weights.safetensors") for p in snaps]
    if not weights or weights[-1][0] != mdir.step:
        weights.append((mdir.step, mdir.weights_path()))
    curve = []
    for step, path in weights:
        model.load_state_dict(load_file(str(path)), strict=True)
        model.eval().to(device)
        row: dict[str, Any] = {"step": step, "train_s": times.get(step)}
        for src, dst in zip(SIDES, SIDES[::-1], strict=True):
            swaps = swap_faces(model, faces[src], dst, device)
            row[f"swap_{src}_to_{dst}"] = sharpness_block(swaps, marks[src], faces[dst], marks[dst])["ratio"]
            rebuilt = reconstruction_scores(
                faces[src], swap_faces(model, faces[src], src, device), marks[src]
            )
            row[f"rebuild_{src}"], row[f"ssim_{src}"] = rebuilt["sharpness"], rebuilt["ssim"]
        curve.append(row)
        log(json.dumps(row))
    return curve


def write_parts(model_dir: Path, out: Path) -> list[str]:
    """The final weights in fp16, in parts of :data:`PART_BYTES`, beside model.json and log.csv."""
    from safetensors.torch import load_file, save_file

    from faceloom.train.modeldir import ModelDir

    out.mkdir(parents=True, exist_ok=True)
    mdir = ModelDir.load(model_dir)
    half = {k: v.half().contiguous() for k, v in load_file(str(mdir.weights_path())).items()}
    whole = out / "weights_fp16.safetensors"
    save_file(half, str(whole))
    blob = whole.read_bytes()
    whole.unlink()
    names = []
    for i in range(0, len(blob), PART_BYTES):
        names.append(f"weights_fp16.part{i // PART_BYTES}")
        (out / names[-1]).write_bytes(blob[i : i + PART_BYTES])
    for name in ("model.json", "log.csv"):
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, out / name)
    return names


def join_parts(folder: Path) -> dict[str, Any]:
    """The fp16 parts of :func:`write_parts` joined, as fp32 tensors (to save into a model dir)."""
    from safetensors.torch import load

    blob = b"".join(
        p.read_bytes() for p in sorted(folder.glob("weights_fp16.part*"), key=lambda p: int(p.suffix[5:]))
    )
    return {k: v.float() for k, v in load(blob).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="faceset A (the s4_hq pair's A in issue 21)")
    parser.add_argument("--b", type=Path, required=True)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--snapshot-every", type=int, default=200)
    parser.add_argument("--ddp-minutes", type=float, default=0.75)
    parser.add_argument("--speed-minutes", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "cuda")
    parser.add_argument("--weights-out", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None, help="also written after every stage")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all stages together")
    args = parser.parse_args()
    import torch

    out = args.out
    budget = Budget(args.budget)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pair = ["train", "--a", str(args.a), "--b", str(args.b), "--preview-every", "0"]
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    }

    def save() -> None:
        if args.json_out:
            tmp = args.json_out.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=1))
            tmp.replace(args.json_out)

    log("parity: lite fp32, 3 steps, one process against torchrun with two")
    tiny = [*pair, "--model", "lite", "--iterations", "3", "--precision", "fp32", "--batch-size", "8"]
    tiny += ["--log-every", "1"]
    runs = {
        "one": faceloom(tiny, out / "one", 120, budget),
        "two": faceloom(tiny, out / "two", 150, budget, ranks=2),
    }
    one, two = log_rows(out / "one"), log_rows(out / "two")
    gaps = [
        abs(float(r1[k]) / float(r2[k]) - 1)
        for r1, r2 in zip(one, two, strict=False)
        for k in ("loss_a", "loss_b")
    ]
    result["parity"] = {**runs, "steps": [len(one), len(two)], "max_rel_gap": max(gaps) if gaps else None}

    save()
    log(f"amp: loom {args.resolution} px, {args.minutes} min")
    amp = [*pair, "--model", "loom", "--resolution", str(args.resolution), "--minutes", str(args.minutes)]
    amp += ["--snapshot-every", str(args.snapshot_every), "--log-every", "50"]
    run = faceloom(amp, out / "amp", args.minutes * 60 + 120, budget)
    result["amp"] = {**run, **speed(out / "amp")}
    if run["rc"] == 0:
        curve = sharpness_curve(out / "amp", points=10)
        hit = [r for r in curve if min(r["swap_a_to_b"] or 0, r["swap_b_to_a"] or 0) >= SHARP_TARGET]
        result["amp"].update(curve=curve, seconds_to_sharpness_target=hit[0]["train_s"] if hit else None)
        if args.weights_out:
            result["amp"]["weight_parts"] = write_parts(out / "amp", args.weights_out)

    save()
    log("fp16: lite 128 px, 40 steps")
    fp16 = [*pair, "--model", "lite", "--resolution", "128", "--iterations", "40", "--precision", "fp16"]
    result["fp16"] = {
        **faceloom([*fp16, "--log-every", "10"], out / "fp16", 120, budget),
        **speed(out / "fp16"),
    }

    save()
    log(f"torchrun: loom {args.resolution} px, two processes, {args.ddp_minutes} min")
    ddp = [*pair, "--model", "loom", "--resolution", str(args.resolution), "--minutes", str(args.ddp_minutes)]
    run = faceloom(
        [*ddp, "--log-every", "20"], out / "ddp", args.ddp_minutes * 60 + 120, budget, ranks=2, port=29519
    )
    result["torchrun"] = {**run, **speed(out / "ddp")}

    save()
    result["speed"] = {}
    for side in SIDES_PX:
        log(f"speed: loom {side} px")
        fast = [*pair, "--model", "loom", "--resolution", str(side), "--minutes", str(args.speed_minutes)]
        fast += ["--log-every", "10", "--eval-every", "0"]
        run = faceloom(fast, out / f"speed{side}", args.speed_minutes * 60 + 90, budget)
        result["speed"][str(side)] = {**run, **speed(out / f"speed{side}")}
        save()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
