"""Sharp swaps: the defaults ``faceloom run`` picks against the loom of before issue 21, for the same
training time; prints one JSON object (progress goes to stderr).

Two pairs (``--pair`` runs one):

* ``s4``: A = GRID speaker s4 at 720x576 (faces about 235 px; 18 clips), B = GRID g1 + s1_more
  (360x288); the converted video is s4's clip ``swau8a``, which no faceset holds.
* ``crema``: A = GRID g1 + s1_more, B = CREMA-D actor 1001 (small faces: must not get worse); the
  converted video is s1_more's last clip, which no faceset holds.
* ``demo``: ``faceloom demo``'s reenactment (CREMA-D 1001's ANG/DIS/FEA clips against the others,
  the ANG clip converted), for the demo's choice of model: ``--arms lite_64,lite_128 --minutes 8``.

Arms, taking turns of ``--slice`` seconds of training in one process so swings in host speed hit
both alike (as benchmarks/train.py does):

* ``before``: ``loom`` as it was: 128 px, one constant learning rate with the warp throughout,
  upscale convs without ICNR;
* ``after``: what ``faceloom run`` does by default now: the side picked from A's faces (at most
  128 px on a CPU), upscales started from ICNR, the phased schedule (warp, decay from half-way,
  the last fifth without the warp); other arms (``--arms``) take the side, ICNR, the detail
  losses, the GAN, the schedule and the bottleneck's size apart, or grow the side half-way
  (progressive resolution).

Each arm trains ``--minutes`` (training steps only are timed). Then for each: ``faceloom eval``'s
figures (sharpness of rebuilds and swaps at the model's side, identity retrieval among every person
of ``../shared/data``, pose error), and the held-out clip converted and scored (flicker and
sharpness against the faces it replaced, at frame resolution; the identity of its swapped faces
among every person), once as ``faceloom convert`` makes it and once with ``--frame-detail 0`` (the
model's own detail, without the frame's finest band). Saved beside the JSON in ``--out``:
``<pair>_crops.png``, the same frames' faces side by side (source, before, after), and each arm's
last preview sheet.

Targets (issue 21): swap sharpness >= 0.8 at the model's side, video sharpness >= 0.6 (s4), identity
retrieval >= 0.99, pose error <= 2 degrees, flicker ratio <= 1.1.

Usage: python benchmarks/quality.py [--pair s4|crema|demo|both] [--minutes 40] [--slice 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import add_data_argument  # noqa: E402
from faceloom.runtime import pin_threads, quiet_native_logs  # noqa: E402

quiet_native_logs()
pin_threads()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from faceloom.config import ConvertConfig, ExtractConfig, TrainConfig  # noqa: E402
from faceloom.convert.pipeline import convert  # noqa: E402
from faceloom.evaluation.evaluate import evaluate, gallery_means, person_labels  # noqa: E402
from faceloom.evaluation.flicker import face_regions, video_flicker  # noqa: E402
from faceloom.extract import extract  # noqa: E402
from faceloom.faces.identity import FaceEmbedder  # noqa: E402
from faceloom.media.reader import iter_video  # noqa: E402
from faceloom.train import schedule  # noqa: E402
from faceloom.train import trainer as trainer_module  # noqa: E402
from faceloom.train.models import create_model  # noqa: E402
from faceloom.train.models.layers import Upscale, he_uniform_  # noqa: E402
from faceloom.train.prefetch import Prefetcher, prefetch_plan  # noqa: E402
from faceloom.train.trainer import Trainer  # noqa: E402
from faceloom.workspace.demo import split_reenactment  # noqa: E402

POSE_KEYS = ("pose_error_deg", "pose_error_interval_deg", "pose_offset_deg")
VIDEO_KEYS = ("flicker_ratio", "sharpness_ratio", "detail_from_source", "detail_swapped", "detail_source")
STORED_SIZE = 512
"""Stored head crops big enough for a 320 px whole_face model."""
ARMS = {
    "before": TrainConfig(model="loom", resolution=128, schedule="constant"),
    "after": TrainConfig(model="loom"),
    "after_128": TrainConfig(model="loom", resolution=128),
    "after_256": TrainConfig(model="loom", resolution=256),
    "after_detail": TrainConfig(model="loom", perceptual_weight=0.5, identity_weight=0.3),
    "after_late_decay": TrainConfig(model="loom"),
    "after_plain": TrainConfig(model="loom"),
    "after_band1": TrainConfig(model="loom"),
    "after_band4": TrainConfig(model="loom"),
    "after_gan": TrainConfig(model="loom", gan=True),
    "after_grow192": TrainConfig(model="loom"),
    "after_grow256": TrainConfig(model="loom"),
    "after_latent256": TrainConfig(model="loom"),
    "after_latent1024": TrainConfig(model="loom"),
    "after_true_face": TrainConfig(model="loom", true_face=0.01),
    "after_true_face_strong": TrainConfig(model="loom", true_face=0.1),
    "after_true_face_free": TrainConfig(model="loom", true_face=0.01),
    "after_pose_weak": TrainConfig(model="loom", true_face=0.01),
    "after_no_true_face": TrainConfig(model="loom", true_face=0.0),
    "lite_64": TrainConfig(model="lite", resolution=64),
    "lite_128": TrainConfig(model="lite", resolution=128),
}
"""``before``: loom before issue 21; ``after``: what ``faceloom run`` picks now; the others take the
side, the detail losses, the GAN (phased: the last fifth only), true face (on in ``after`` at
DeepFaceLab's typical power; ten times it; off, as ``after`` was until stop 33), the schedule or the
upscales' initialisation apart."""
PLAIN_ARMS = frozenset({"before", "after_plain"})
"""Arms whose upscale convs start from HeUniform, as before ICNR (loom's ``icnr``) was the default."""
SCHEDULE_VARIANTS: dict[str, dict[str, float]] = {"after_late_decay": {"DECAY_FROM": 0.8, "LR_FLOOR": 0.3}}
"""Arms that train with other constants of :mod:`faceloom.train.schedule` (set during their turns)."""
BAND_WEIGHTS = {"after_band1": 1.0, "after_band4": 4.0}
"""Arms that add the L1 loss on the fine bands (``TrainDefaults.band_weight``, off in ``loom``)."""
GROW_ARMS = {"after_grow192": 192, "after_grow256": 256}
"""Progressive resolution: arms that train at the side ``faceloom run`` picks (128 px on a CPU) until
the learning rate starts to decay (``schedule.DECAY_FROM``), then go on at a bigger side from those
weights (``--init-from`` at another ``--resolution``: the convs carry over, the bottleneck is
resampled)."""
POSE_WEIGHTS = {"after_true_face_free": 0.0, "after_pose_weak": 0.01}
"""Arms whose true face weighs its pose readout otherwise than ``adversary.POSE_WEIGHT``: off (the
latents of B may take A's head angles), or 0.01, its weight before it was raised to 0.1."""
LATENTS = {"after_latent256": 256, "after_latent1024": 1024}
"""Arms whose dense bottleneck has another size than loom's 512 (DeepFaceLab's SAEHD: 256 at 128 px):
how much of A the shared latent carries into B's decoder."""


@dataclass(frozen=True)
class Pair:
    a: list[Path]
    b: list[Path]
    video: Path
    a_every: int
    b_every: int


def pairs(data: Path) -> dict[str, Pair]:
    """The pairs, each a list of A's and B's inputs, the clip converted, and the frame steps."""
    grid = data / "grid"
    s4 = sorted((grid / "s4_hq").glob("*.mpg"))
    s1 = sorted((grid / "s1_more").glob("*.mpg"))
    s4_video, s1_video = grid / "s4_hq" / "swau8a.mpg", s1[-1]
    demo = split_reenactment(sorted((data / "crema-d").glob("*.flv")))
    g1_s1 = [grid / "bbaf2n.mpg", *(p for p in s1 if p != s1_video)]
    return {
        "s4": Pair([p for p in s4 if p != s4_video], g1_s1, s4_video, 2, 3),
        "crema": Pair(g1_s1, [data / "crema-d"], s1_video, 3, 1),
        "demo": Pair([Path(p) for p in demo.a], [Path(p) for p in demo.b], Path(demo.target), 1, 1),
    }


def people(data: Path) -> dict[str, list[Path]]:
    """Every person of the test data, for identity retrieval (g1 and s1 are the same man)."""
    grid = data / "grid"
    return {
        "s1": [grid / "bbaf2n.mpg"],
        "g2": [grid / "brbk7n.mpg"],
        "g3": [grid / "id2_vcd_swwp2s.mpg", grid / "pwij3p.mpg"],
        "s4": [grid / "s4_hq" / "swau8a.mpg"],
        "crema": [data / "crema-d"],
    }


def faceset(out: Path, inputs: list[Path], every: int) -> Path:
    if not (out / "faceset.json").is_file():
        print(f"[quality] extracting {out.name}", file=sys.stderr, flush=True)
        extract([str(p) for p in inputs], out, ExtractConfig(size=STORED_SIZE, every_n=every))
    return out


def latent(arm: str) -> dict[str, Any]:
    """The architecture settings an arm overrides (recorded in its ``model.json`` as any other)."""
    return {"latent": LATENTS[arm]} if arm in LATENTS else {}


def plain_upscales(trainer: Trainer) -> None:
    """Start the upscale convs from HeUniform (no ICNR), in the trained weights and in the weight
    average alike."""
    with torch.no_grad():
        for module in trainer.model.modules():
            if isinstance(module, Upscale):
                conv = module[0]
                assert isinstance(conv, torch.nn.Conv2d)
                he_uniform_(conv.weight)
        if trainer.average is not None:
            trainer.average.module.load_state_dict(trainer.model.state_dict())


class Arm:
    """One model of a pair, trained in slices; the phase follows the share of its minutes spent."""

    def __init__(
        self,
        a: Path,
        b: Path,
        out: Path,
        config: TrainConfig,
        minutes: float,
        plain: bool,
        grow: int | None,
        arch: dict[str, Any],
    ) -> None:
        with mock.patch.object(trainer_module, "create_model", partial(create_model, **arch)):
            self.trainer = Trainer(a, b, out, config)
        if plain:
            plain_upscales(self.trainer)
        self.prefetch = self.batches()
        self.trained_s, self.end = 0.0, minutes * 60.0
        self.schedule: dict[str, float] = {}
        self.inputs, self.grow, self.steps_before = (a, b), grow, 0

    def batches(self) -> Prefetcher[dict[str, dict[str, torch.Tensor]]]:
        """The current trainer's batches from step 0, built ahead as the trainer would build them."""
        return Prefetcher(self.trainer._batches, 0, *prefetch_plan(self.trainer.device.type))

    @property
    def done(self) -> bool:
        return self.trained_s >= self.end

    def grow_now(self) -> None:
        """Go on at the bigger side, from the weights saved so far (in a dir beside them)."""
        assert self.grow is not None
        self.prefetch.close()
        old = self.trainer
        old.save()
        side, self.grow = self.grow, None
        config = replace(old.config, resolution=side, init_from=str(old.mdir.root))
        self.steps_before += old.step
        self.trainer = Trainer(*self.inputs, old.mdir.root.with_name(f"{old.mdir.root.name}_{side}"), config)
        self.prefetch = self.batches()

    def advance(self, seconds: float) -> None:
        stop = min(self.trained_s + seconds, self.end)
        kept = {k: getattr(schedule, k) for k in self.schedule}
        for k, v in self.schedule.items():
            setattr(schedule, k, v)
        try:
            while self.trained_s < stop:
                if self.grow is not None and self.trained_s >= schedule.DECAY_FROM * self.end:
                    self.grow_now()
                t = self.trainer
                t.enter_phase(self.trained_s / self.end)
                t0 = time.perf_counter()
                t.train_step(t.step, self.prefetch.get(t.step))
                t.step += 1
                self.trained_s += time.perf_counter() - t0
        finally:
            for k, v in kept.items():
                setattr(schedule, k, v)

    def finish(self) -> dict[str, Any]:
        self.prefetch.close()
        t = self.trainer
        t.save()
        t.preview()
        steps = self.steps_before + t.step
        return {
            "resolution": t.model.resolution,
            "steps": steps,
            "steps_at_last_side": t.step,
            "faces_per_s": round(steps * 2 * t.batch_size / max(self.trained_s, 1e-9), 2),
            "last_phase": t.phase.name,
        }


def side_by_side(source: Path, videos: dict[str, Path], out: Path, n: int = 4) -> None:
    """Faces of ``n`` frames spread over the clip: a row per frame, source then each video."""
    lms = face_regions(source)
    with_face = [i for i, f in enumerate(lms) if f]
    picks = [with_face[k * (len(with_face) - 1) // max(n - 1, 1)] for k in range(n)] if with_face else []
    frames: dict[str, list[np.ndarray]] = {}
    for name, path in {"source": source, **videos}.items():
        wanted = set(picks)
        frames[name] = [f.rgb for i, f in enumerate(iter_video(path)) if i in wanted]
    rows = []
    for k, i in enumerate(picks):
        pts = lms[i][0]
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        side = int(max(x1 - x0, y1 - y0) * 1.4)
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        tiles = []
        for name in frames:
            img = frames[name][k]
            ys, xs = max(cy - side // 2, 0), max(cx - side // 2, 0)
            crop = img[ys : ys + side, xs : xs + side]
            tiles.append(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC))
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def frame_identity(video: Path, means: list[np.ndarray], labels: list[int]) -> dict[str, Any]:
    """Identity of a converted video's swapped faces: the share of frames whose face is nearest
    (dlib) to B, person 1 of ``means`` (one per faceset; ``labels`` from :func:`person_labels`,
    0 = A), and the median distances to B and to A."""
    embedder = FaceEmbedder()
    person = np.asarray(labels)
    hits, to_b, to_a = [], [], []
    for frame, faces in zip(iter_video(video), face_regions(video), strict=False):
        if faces:
            d = np.linalg.norm(np.stack(means) - embedder.embed(frame.rgb, faces[0]), axis=1)
            hits.append(person[int(np.argmin(d))] == 1)
            to_b.append(d[1])
            to_a.append(d[0])
    if not hits:
        return {"frames": 0}
    return {
        "frames": len(hits),
        "nearest_is_b": round(float(np.mean(hits)), 3),
        "median_dist_b": round(float(np.median(to_b)), 3),
        "median_dist_a": round(float(np.median(to_a)), 3),
    }


def eval_summary(report: dict[str, Any]) -> dict[str, Any]:
    sharp, ident, video = report["sharpness"], report["identity"], report["video"]
    pose = report.get("pose_expression", {})
    return {
        "swap_sharpness": {d: sharp[d]["ratio"] for d in sharp},
        "swap_grid_ratio": {d: sharp[d]["grid_ratio"] for d in sharp},
        "rebuild_sharpness": {s: report["reconstruction"][s]["sharpness"] for s in ("a", "b")},
        "holdout_ssim": {s: report["reconstruction"][s]["ssim"] for s in ("a", "b")},
        "id_retrieval_all": {d: ident[d]["id_retrieval_all"] for d in ident if isinstance(ident[d], dict)},
        "people": max((v.get("people", 0) for v in ident.values() if isinstance(v, dict)), default=0),
        **{k: {d: v.get(k) for d, v in pose.items() if isinstance(v, dict)} for k in POSE_KEYS},
        "video": {k: video[k] for k in VIDEO_KEYS},
    }


def run_pair(
    name: str,
    pair: Pair,
    data: Path,
    work: Path,
    out: Path,
    minutes: float,
    slice_s: float,
    arm_names: list[str],
    rescore: bool = False,
) -> dict[str, Any]:
    """Train the arms in turns of ``slice_s`` seconds for ``minutes`` each, then score them;
    ``rescore``: score the arms already trained in ``work`` again (after a change to convert)."""
    fs = work / "facesets"
    a = faceset(fs / f"{name}_a", pair.a, pair.a_every)
    b = faceset(fs / f"{name}_b", pair.b, pair.b_every)
    gallery = [faceset(fs / f"person_{p}", clips, 1) for p, clips in people(data).items()]
    if rescore:
        dirs = {k: arm_dir(work, name, k) for k in arm_names}
        return score_arms(name, pair, gallery, dirs, {}, work, out)
    arms = {
        k: Arm(a, b, work / name / k, ARMS[k], minutes, k in PLAIN_ARMS, GROW_ARMS.get(k), latent(k))
        for k in arm_names
    }
    for k, arm in arms.items():
        arm.schedule = SCHEDULE_VARIANTS.get(k, {})
        if k in BAND_WEIGHTS:
            arm.trainer.defaults = replace(arm.trainer.defaults, band_weight=BAND_WEIGHTS[k])
        if k in POSE_WEIGHTS:
            arm.trainer.adversary.pose_weight = POSE_WEIGHTS[k]
    while not all(arm.done for arm in arms.values()):
        for arm in arms.values():
            if not arm.done:
                arm.advance(slice_s)
        state = ", ".join(f"{k} {v.trained_s / 60:.1f} min step {v.trainer.step}" for k, v in arms.items())
        print(f"[quality {name}] {state}", file=sys.stderr, flush=True)
    result = {k: arm.finish() for k, arm in arms.items()}
    return score_arms(
        name, pair, gallery, {k: arm.trainer.mdir.root for k, arm in arms.items()}, result, work, out
    )


def arm_dir(work: Path, name: str, arm: str) -> Path:
    """Where an arm's model is saved (a grown arm's is the one at its last side)."""
    side = GROW_ARMS.get(arm)
    return work / name / (arm if side is None else f"{arm}_{side}")


def score_arms(
    name: str,
    pair: Pair,
    gallery: list[Path],
    model_dirs: dict[str, Path],
    result: dict[str, Any],
    work: Path,
    out: Path,
) -> dict[str, Any]:
    """Convert the pair's held-out clip with each arm's model and score it (eval, the video with and
    without the frame's detail, identity of every frame), into ``result[arm]["eval"]``."""
    fs = work / "facesets"
    means = list(gallery_means([fs / f"{name}_a", fs / f"{name}_b", *gallery]).values())
    labels = person_labels(means)
    videos: dict[str, Path] = {}
    for k, model_dir in model_dirs.items():
        result.setdefault(k, {})
        shutil.copy(model_dir / "previews" / "latest.png", out / f"{name}_{k}_preview.png")
        videos[k] = work / name / f"{k}.mp4"
        convert(pair.video, model_dir, videos[k], ConvertConfig(), overwrite=True)
        report = evaluate(model_dir, video=videos[k], source=pair.video, gallery=gallery)
        (out / f"{name}_{k}_eval.json").write_text(json.dumps(report, indent=1, default=str))
        result[k]["eval"] = eval_summary(report)
        result[k]["eval"]["video_identity"] = frame_identity(videos[k], means, labels)
        # the model's own detail: the same clip without the frame's finest band (--frame-detail 0)
        own = work / name / f"{k}_own_detail.mp4"
        convert(pair.video, model_dir, own, ConvertConfig(frame_detail=0.0), overwrite=True)
        plain = video_flicker(own, pair.video)
        result[k]["eval"]["video_frame_detail_0"] = {key: plain[key] for key in VIDEO_KEYS}
        result[k]["eval"]["video_identity_frame_detail_0"] = frame_identity(own, means, labels)
        print(f"[quality {name}] {k}: {json.dumps(result[k]['eval'])}", file=sys.stderr, flush=True)
    side_by_side(pair.video, videos, out / f"{name}_crops.png")
    print(
        f"[quality {name}] crops (source, {', '.join(videos)}): {out / f'{name}_crops.png'}", file=sys.stderr
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", choices=("s4", "crema", "demo", "both"), default="both")
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--arms", default="before,after", help=f"Comma-separated, of: {', '.join(ARMS)}.")
    parser.add_argument("--slice", type=float, default=30.0)
    parser.add_argument(
        "--rescore", action="store_true", help="Convert and score the arms already trained in --work."
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "quality")
    parser.add_argument("--work", type=Path, default=None, help="Facesets and models (default: --out/work).")
    add_data_argument(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "work"
    chosen = ("s4", "crema") if args.pair == "both" else (args.pair,)
    all_pairs = pairs(args.data)
    report: dict[str, Any] = {
        "host": {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "minutes": args.minutes,
    }
    for name in chosen:
        arms = args.arms.split(",")
        report[name] = run_pair(
            name, all_pairs[name], args.data, work, args.out, args.minutes, args.slice, arms, args.rescore
        )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
