"""Conversion speed on the real clips: frames/s end to end and each stage's busy share, per model.

Runs the six CREMA-D clips at their own 480x360 and a 1280x720 upscale of one of them through
`lite`, `original` and `loom` (weights barely trained: speed does not depend on them), measures
flicker of the face region with and without temporal smoothing, and the peak memory of a
process converting a clip and a 10x longer one. Prints one JSON object.
Usage: python benchmarks/convert.py [--data DIR] [--models lite,original,loom]
Targets on 2 CPU cores: 30 frames/s at 480x360 with `original`, 15 frames/s at 1280x720 with `loom`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import add_data_argument  # noqa: E402
from faceloom.runtime import pin_threads, quiet_native_logs  # noqa: E402

quiet_native_logs()
pin_threads()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tests.media_helpers import read_frames, write_video  # noqa: E402

from faceloom.config import ConvertConfig, ExtractConfig, TrainConfig  # noqa: E402
from faceloom.convert.pipeline import convert  # noqa: E402
from faceloom.extract import extract  # noqa: E402
from faceloom.faces.detect import create_detector  # noqa: E402
from faceloom.metrics import flicker  # noqa: E402
from faceloom.train.trainer import train  # noqa: E402

_CHILD = """
import sys
from faceloom.runtime import pin_threads, quiet_native_logs
quiet_native_logs(); pin_threads()
from faceloom.convert.pipeline import convert
r = convert(sys.argv[1], sys.argv[2], sys.argv[3])
# VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork+exec into ru_maxrss.
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0].split()[1]
print(r.frames, hwm)
"""


def convert_clips(clips: list[Path], model: Path, tmp: Path, config: ConvertConfig) -> dict[str, object]:
    frames, wall = 0, 0.0
    busy: dict[str, float] = {}
    for k, clip in enumerate(clips):
        out = tmp / f"out_{k}.mp4"
        t0 = time.perf_counter()
        result = convert(clip, model, out, config, overwrite=True)
        wall += time.perf_counter() - t0
        frames += result.frames
        assert result.stats is not None
        for s in result.stats.stages:
            busy[s.name] = busy.get(s.name, 0.0) + s.busy_s
    return {
        "frames": frames,
        "wall_s": round(wall, 2),
        "frames_per_s": round(frames / wall, 1),
        "stage_ms_per_frame": {k: round(1000 * v / frames, 2) for k, v in busy.items()},
        "stage_busy_share": {k: round(v / wall, 2) for k, v in busy.items()},
        "slowest_stage": max(busy, key=lambda k: busy[k]),
    }


def face_flicker(video: Path, box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    return flicker([f[y0:y1, x0:x1] for f in read_frames(video)])


def peak_rss_mb(clip: Path, model: Path, out: Path) -> tuple[int, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(clip), str(model), str(out)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    frames, kb = proc.stdout.split()[-2:]
    return int(frames), round(int(kb) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_data_argument(parser)
    parser.add_argument("--models", default="lite,original,loom")
    parser.add_argument("--hd-model", default="loom")
    args = parser.parse_args()
    clips = sorted((args.data / "crema-d").glob("*.flv"))
    if not clips:
        raise SystemExit(f"no CREMA-D clips under {args.data}")
    report: dict[str, object] = {
        "benchmark": "convert",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": platform.processor()},
        "input": {"sd": f"{len(clips)} CREMA-D clips 480x360", "hd": "CREMA-D clip upscaled to 1280x720"},
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fs = tmp / "fs"
        extract(clips, fs, ExtractConfig(every_n=3))
        frames = read_frames(clips[0])
        hd = write_video(
            tmp / "hd.mp4", [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC) for f in frames]
        )
        long = write_video(tmp / "long.mp4", frames * 10)
        one = write_video(tmp / "one.mp4", frames)
        models: dict[str, Path] = {}
        for name in args.models.split(","):
            models[name] = tmp / f"model_{name}"
            train(fs, fs, models[name], TrainConfig(model=name, iterations=1, preview_every=0, eval_every=0))
        results: dict[str, dict[str, dict[str, object]]] = {}
        for name, model in models.items():
            entry: dict[str, dict[str, object]] = {"sd": convert_clips(clips, model, tmp, ConvertConfig())}
            if name == args.hd_model:
                entry["hd"] = convert_clips([hd], model, tmp, ConvertConfig())
            results[name] = entry
        report["models"] = results
        first = next(iter(models.values()))
        det = create_detector("mediapipe")
        x0, y0, x1, y1 = det.detect(np.ascontiguousarray(frames[0]))[0].bbox
        det.close()
        box = (int(x0), int(y0), int(x1), int(y1))
        flick: dict[str, float] = {"source": round(face_flicker(one, box), 3)}
        for smooth in (0.0, 1.0):
            out = tmp / f"smooth_{smooth}.mp4"
            convert(one, first, out, ConvertConfig(smooth=smooth), overwrite=True)
            flick[f"smooth_{smooth:g}"] = round(face_flicker(out, box), 3)
        flick["ratio_smoothed_vs_raw"] = round(flick["smooth_1"] / flick["smooth_0"], 3)
        report["flicker_face_region"] = flick
        n1, rss1 = peak_rss_mb(one, first, tmp / "mem1.mp4")
        n10, rss10 = peak_rss_mb(long, first, tmp / "mem10.mp4")
        report["peak_rss_mb"] = {
            f"{n1}_frames": rss1,
            f"{n10}_frames": rss10,
            "ratio": round(rss10 / rss1, 3),
        }

    def reached(model: str, which: str) -> object:
        entry = results.get(model)
        return entry.get(which, {}).get("frames_per_s") if isinstance(entry, dict) else None

    report["targets"] = {
        "original_sd_fps": {"target": 30, "reached": reached("original", "sd")},
        f"{args.hd_model}_hd_fps": {"target": 15, "reached": reached(args.hd_model, "hd")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
