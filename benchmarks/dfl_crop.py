"""What training on DeepFaceLab's whole_face crop (for a .dfm) costs against faceloom's own crop.

Trains ``loom`` on its own ``whole_face`` crop and on ``dfl_whole_face`` side by side (interleaved
turns of --slice seconds, so host speed swings hit both), A = GRID speaker g3, B = the CREMA-D
actor, for --minutes of training each. Then scores held-out reconstructions (A's faces through A's
decoder, B's through B's), masked SSIM on one common crop (``face``, 64 px, landmark hull):

* ``faceloom_whole_face``: faceloom's own model and crop, as faceloom's convert runs it;
* ``dfl_whole_face_torch``: the DFL-crop model run by faceloom (PyTorch);
* ``dfl_whole_face_dfm``: that model exported with ``faceloom export --dfm`` and run through ONNX
  Runtime the way DeepFaceLive calls a .dfm, on faces aligned DFL's way.

Usage: python benchmarks/dfl_crop.py [--minutes 10] [--slice 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import add_data_argument  # noqa: E402
from faceloom.runtime import pin_threads, quiet_native_logs  # noqa: E402

quiet_native_logs()
pin_threads()

import numpy as np  # noqa: E402

from benchmarks.train import TimedRun, interleave  # noqa: E402
from faceloom.config import ConvertConfig, TrainConfig  # noqa: E402
from faceloom.config.choices import SIDES, Side  # noqa: E402
from faceloom.convert.dfm_swapper import DfmSwapper  # noqa: E402
from faceloom.evaluation.crops import common_holdout_ssim, model_inputs, to_common_crop  # noqa: E402
from faceloom.extract import extract  # noqa: E402
from faceloom.faces.faceset import Faceset  # noqa: E402
from faceloom.faces.masks import hull_mask  # noqa: E402
from faceloom.metrics import ssim  # noqa: E402
from faceloom.train.export import export_dfm  # noqa: E402
from faceloom.train.modeldir import ModelDir  # noqa: E402

HELD = 48


def dfm_ssim(dfm: Path, fs: Faceset, records: list[Any], to: Side) -> float:
    """Masked common-crop SSIM of a .dfm's reconstructions of held-out faces aligned DFL's way."""
    from faceloom.evaluation.crops import crop_landmarks

    swapper = DfmSwapper(dfm, ConvertConfig(to=to))
    inputs = model_inputs(fs, records, "dfl_whole_face", swapper.resolution)
    recon, _ = swapper.predict(inputs)
    out = to_common_crop(recon, records, "dfl_whole_face")
    truth = to_common_crop(inputs, records, "dfl_whole_face")
    return float(
        np.mean(
            [
                ssim(o, t, mask=hull_mask(crop_landmarks(r, "face", 64), 64))
                for r, o, t in zip(records, out, truth, strict=True)
            ]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_data_argument(parser)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--slice", type=float, default=10.0)
    args = parser.parse_args()
    grid, crema = args.data / "grid", sorted((args.data / "crema-d").glob("*.flv"))
    base: dict[str, Any] = {"save_every": 0, "preview_every": 0, "eval_every": 0, "log_every": 10**9}
    report: dict[str, Any] = {
        "benchmark": "dfl_crop",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "metric": f"held-out masked SSIM, face crop 64 px, landmark hull mask, {HELD} faces per side",
        "minutes": args.minutes,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extract([grid / "id2_vcd_swwp2s.mpg", grid / "pwij3p.mpg"], root / "a")
        extract(crema, root / "b")
        fs = {"a": Faceset.load(root / "a"), "b": Faceset.load(root / "b")}
        configs = {
            "faceloom_whole_face": TrainConfig(model="loom", **base),
            "dfl_whole_face": TrainConfig(model="loom", crop="dfl_whole_face", **base),
        }
        runs = {
            name: TimedRun(root / "a", root / "b", root / name, cfg, [args.minutes], 1e9)
            for name, cfg in configs.items()
        }
        results = interleave(runs, args.slice)
        for name, r in results.items():
            report[name] = {"steps": r["steps"], "faces_per_s": r["faces_per_s"]}
        scores: dict[str, dict[str, float]] = {}
        for name, run in runs.items():
            trainer = run.trainer
            ids = {s: set(trainer.holdout[s].holdout_ids) for s in SIDES}
            held = {s: [r for r in fs[s].records if r.id in ids[s]][:HELD] for s in SIDES}
            key = "dfl_whole_face_torch" if name == "dfl_whole_face" else name
            scores[key] = {
                s: round(common_holdout_ssim(trainer.inference_model, fs[s], held[s], s), 4) for s in SIDES
            }
            if name == "dfl_whole_face":
                mdir = ModelDir.load(root / name)
                mdir.save_checkpoint(results[name]["steps"], trainer.inference_model.state_dict(), None, {})
                scores["dfl_whole_face_dfm"] = {}
                for s in SIDES:
                    dfm = root / f"to_{s}.dfm"
                    export_dfm(root / name, dfm, s)
                    scores["dfl_whole_face_dfm"][s] = round(dfm_ssim(dfm, fs[s], held[s], s), 4)
        for key, sides in scores.items():
            mean = round(float(np.mean(list(sides.values()))), 4)
            report.setdefault(key, {})["ssim"] = {**sides, "mean": mean}
        own = report["faceloom_whole_face"]["ssim"]["mean"]
        report["dfm_over_faceloom_ssim"] = round(report["dfl_whole_face_dfm"]["ssim"]["mean"] / own, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
