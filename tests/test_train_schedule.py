"""The phased schedule (warp, decay, a last stretch without the warp), the detail losses on dlib's
face network, and previews of faces from different clips and poses, on real faces."""

from __future__ import annotations

import csv
import itertools
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from faceloom.faces.faceset import Faceset
from faceloom.train.face_features import FaceFeatures
from faceloom.train.holdout import split_holdout
from faceloom.train.preview import TITLE_H, spread_ids
from faceloom.train.schedule import DECAY_FROM, LR_FLOOR, SHARPEN_FROM, budget_progress, phase_at
from faceloom.train.trainer import Trainer, train
from tests.conftest import lite_config


def _rows(model_dir: Path) -> list[dict[str, str]]:
    with open(model_dir / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_phases_follow_the_budget() -> None:
    assert [phase_at(p).name for p in (0.0, DECAY_FROM - 0.01, DECAY_FROM, SHARPEN_FROM, 1.0)] == [
        "warped",
        "warped",
        "decay",
        "sharpen",
        "sharpen",
    ]
    scales = [phase_at(p / 100).lr_scale for p in range(101)]
    assert scales[0] == 1.0 and abs(scales[-1] - LR_FLOOR) < 1e-9
    assert all(a >= b for a, b in itertools.pairwise(scales))
    late, early = phase_at(0.9), phase_at(0.3)
    assert (late.warp, late.gan, late.detail) == (False, True, True)
    assert (early.warp, early.gan, early.detail) == (True, False, False)
    constant = [phase_at(p / 10, phased=False) for p in range(11)]
    assert {(c.warp, c.gan, c.detail, c.lr_scale) for c in constant} == {(True, True, True, 1.0)}
    # the further along of steps and minutes
    assert budget_progress(50, 100, 30.0, 10.0) == 0.5
    assert budget_progress(10, 100, 540.0, 10.0) == 0.9
    assert budget_progress(10, None, 0.0, None) == 0.0


def test_a_run_goes_through_the_phases_and_a_constant_one_does_not(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    steps = 20
    train(pair[0], pair[1], tmp_path / "phased", lite_config(iterations=steps, log_every=1, warmup_steps=0))
    rows = _rows(tmp_path / "phased")
    phases = [r["phase"] for r in rows]
    assert phases[0] == "warped" and phases[-1] == "sharpen" and "decay" in phases
    assert phases == sorted(phases, key=["warped", "decay", "sharpen"].index)  # never back
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] < 0.2 * lrs[0] and lrs[: int(steps * DECAY_FROM) - 1] == [lrs[0]] * (
        int(steps * DECAY_FROM) - 1
    )
    train(
        pair[0],
        pair[1],
        tmp_path / "constant",
        lite_config(iterations=steps, log_every=1, warmup_steps=0, schedule="constant"),
    )
    rows = _rows(tmp_path / "constant")
    assert {r["phase"] for r in rows} == {"warped"} and len({r["lr"] for r in rows}) == 1


def test_the_last_stretch_trains_without_the_warp_and_the_preview_says_so(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    trainer = Trainer(pair[0], pair[1], tmp_path / "m", lite_config(iterations=4))
    assert all(d.augment.warp for d in trainer.data.values())
    trainer.enter_phase(0.95)
    assert trainer.phase.name == "sharpen" and not any(d.augment.warp for d in trainer.data.values())
    warped_off = trainer.data["a"].batch(0, 4)
    assert np.array_equal(warped_off.warped, warped_off.target)  # the input is the target, unwarped
    trainer.enter_phase(0.1)
    assert all(d.augment.warp for d in trainer.data.values())
    path = trainer.preview()
    assert path is not None
    import cv2

    sheet = cv2.imread(str(path))
    title = sheet[:TITLE_H, 70:400]
    assert title.max() > 200  # the step and phase are written over the rows


def test_previews_spread_over_clips_and_poses(pair: tuple[Path, Path]) -> None:
    fs = Faceset.load(pair[1])  # CREMA-D: six clips
    holdout = split_holdout(fs, share=0.1)
    ids = spread_ids(fs, holdout)
    by_id = fs.by_id()
    assert len(ids) == 6 and len(set(ids)) == 6
    assert len({by_id[i].source for i in ids}) >= 3
    yaws = [by_id[i].yaw for i in ids]
    first_six = [r.yaw for r in fs.records[:6]]
    assert max(yaws) - min(yaws) > max(first_six) - min(first_six)


def test_dlib_chips_of_model_crops_tell_the_two_people_apart(pair: tuple[Path, Path], tmp_path: Path) -> None:
    trainer = Trainer(pair[0], pair[1], tmp_path / "m", lite_config(iterations=1))
    features = FaceFeatures(trainer.model.crop, trainer.model.resolution, torch.device("cpu"))
    faces = {s: trainer.eval_data[s].fixed(8).to_torch(torch.device("cpu"))["target"] for s in ("a", "b")}
    with torch.no_grad():
        desc = {s: features.descriptors(faces[s]) for s in faces}
    mean = {s: d.mean(dim=0) for s, d in desc.items()}
    assert float((desc["a"] - mean["a"]).norm(dim=1).max()) < 0.5
    assert float((desc["b"] - mean["b"]).norm(dim=1).max()) < 0.5
    assert float((mean["a"] - mean["b"]).norm()) > 0.6


def test_detail_losses_train_and_a_resumed_log_gains_their_columns(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m"
    quiet = lite_config(iterations=10, log_every=1, preview_every=0, eval_every=0)
    train(pair[0], pair[1], out, quiet)
    before = _rows(out)
    result = train(None, None, out, replace(quiet, perceptual_weight=0.5, identity_weight=0.3), resume=True)
    rows = _rows(out)
    assert rows[: len(before)] == [{**r, **{k: "" for k in rows[0] if k not in r}} for r in before]
    keys = ("perceptual_a", "perceptual_b", "identity_a_to_b", "identity_b_to_a")
    for r in rows[len(before) :]:  # phased: the detail losses in the last fifth only
        values = [r[k] for k in keys]
        if r["phase"] == "sharpen":
            assert all(np.isfinite(float(v)) and float(v) > 0 for v in values), r
        else:
            assert values == ["", "", "", ""], r
    assert [r["phase"] for r in rows[len(before) :]].count("sharpen") == 2
    assert result.step == 20


@pytest.mark.parametrize("weights", [{"identity_weight": 1.0}, {"perceptual_weight": 1.0}])
def test_each_detail_loss_moves_the_weights(
    pair: tuple[Path, Path], tmp_path: Path, weights: dict[str, float]
) -> None:
    trainer = Trainer(pair[0], pair[1], tmp_path / "m", lite_config(iterations=1, **weights))
    assert trainer.detail is not None
    batches = trainer._batches(0)
    rgb, _ = trainer.model(torch.cat([batches["a"]["warped"], batches["b"]["warped"]]), "ab")
    n = batches["a"]["warped"].shape[0]
    loss, parts = trainer.detail(trainer.model, {"a": rgb[:n], "b": rgb[n:]}, batches)
    loss.backward()
    decoder_b = trainer.model.decoders["b"]
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in decoder_b.parameters())
    assert parts and all(v > 0 for v in parts.values())


def test_an_interrupted_run_resumes_its_phases_exactly(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """What `faceloom run` does after Ctrl-C: the rest of the budget, starting from the share spent,
    gives the same phases, learning rates and fp32 losses as one run."""
    from faceloom.progress import Progress

    cfg = lite_config(
        precision="fp32", batch_size=4, save_every=0, preview_every=0, eval_every=0, log_every=1
    )
    train(pair[0], pair[1], tmp_path / "straight", replace(cfg, iterations=20))
    stop = threading.Event()

    def halfway(p: Progress) -> None:
        if p.done == 10:
            stop.set()

    first = train(
        pair[0], pair[1], tmp_path / "resumed", replace(cfg, iterations=20), progress=halfway, cancel=stop
    )
    assert first.step == 10 and first.stopped_by == "cancelled"
    train(None, None, tmp_path / "resumed", replace(cfg, iterations=10), resume=True, schedule_start=0.5)
    straight, resumed = _rows(tmp_path / "straight"), _rows(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [str(i) for i in range(1, 21)]
    for r1, r2 in zip(straight, resumed, strict=True):
        assert (r1["phase"], r1["lr"]) == (r2["phase"], r2["lr"])
        assert float(r1["loss_a"]) == pytest.approx(float(r2["loss_a"]), rel=1e-5, abs=1e-6)
