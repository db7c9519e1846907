"""`faceloom eval`: held-out faces only, trained beats untrained, deterministic numbers, flicker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from faceloom.cli.formatting import eval_lines
from faceloom.errors import InputError
from faceloom.evaluation import EvalConfig, evaluate, evaluate_model
from faceloom.evaluation.crops import model_crops
from faceloom.evaluation.evaluate import _Landmarker, pose_expression_block
from faceloom.evaluation.flicker import video_flicker
from faceloom.evaluation.interval import bootstrap_mean_interval
from faceloom.faces.faceset import Faceset
from faceloom.train.modeldir import ModelDir
from faceloom.train.models import create_model
from tests.media_helpers import read_frames, write_video

CFG = EvalConfig(seed=3, device="cpu", max_faces=12)


@pytest.fixture(scope="module")
def trained_eval(trained_lite: Path) -> dict[str, Any]:
    return evaluate(trained_lite, config=CFG)


def per_angle(block: dict[str, Any]) -> list[float]:
    return [block[f"{k}_error_deg"] for k in ("yaw", "pitch", "roll")]


def _numbers(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("holdout", "reconstruction", "identity", "pose_expression")}


def test_eval_scores_held_out_faces_and_beats_untrained_weights(
    pair: tuple[Path, Path], trained_lite: Path, trained_eval: dict[str, Any]
) -> None:
    meta = ModelDir.load(trained_lite).meta
    for s in ("a", "b"):
        h = trained_eval["holdout"][s]
        assert not h["leak"] and h["missing"] == 0 and h["found"] == len(meta["holdout"][s]["holdout_ids"])
        assert h["used"] == min(12, h["found"]) == trained_eval["reconstruction"][s]["faces"]
    torch.manual_seed(0)
    fresh = create_model("lite")
    fs_a, fs_b = Faceset.load(pair[0]), Faceset.load(pair[1])
    untrained = evaluate_model(
        fresh, meta, fs_a, fs_b, EvalConfig(seed=3, device="cpu", max_faces=12, pose=False)
    )
    ident, before = trained_eval["identity"], untrained["identity"]
    # B's faces through A's decoder look like A once trained; untrained output is a grey blur.
    assert ident["b_to_a"]["identity_score"] > before["b_to_a"]["identity_score"] + 0.02, (ident, before)
    assert ident["a_to_b"]["identity_score"] > before["a_to_b"]["identity_score"] + 0.05, (ident, before)
    assert ident["a_to_b"]["id_retrieval"] >= 0.8 and ident["b_to_a"]["id_retrieval"] >= 0.8
    for s in ("a", "b"):
        rec, rec0 = trained_eval["reconstruction"][s], untrained["reconstruction"][s]
        assert rec["ssim"] > rec0["ssim"] + 0.3 and rec["psnr"] > rec0["psnr"] + 5.0, (rec, rec0)
        # a 300-step lite rebuilds faces softer than they are, but far less flat than grey noise
        assert rec0["sharpness"] + 0.15 < rec["sharpness"] < 1.0, (rec, rec0)
    for d in ("a_to_b", "b_to_a"):
        sharp, sharp0 = trained_eval["sharpness"][d], untrained["sharpness"][d]
        assert sharp0["ratio"] + 0.05 < sharp["ratio"] < 1.0, (sharp, sharp0)
        assert sharp["real_detail"] == sharp0["real_detail"] > 0
    for d in ("a_to_b", "b_to_a"):
        pe = trained_eval["pose_expression"][d]
        assert pe["measured"] >= 0.75 * pe["faces"], pe
        assert pe["pose_error_deg"] < 5.0 and pe["landmark_nme"] < 0.15 and pe["mouth_open_error"] < 0.15, pe
        low, high = pe["pose_error_interval_deg"]
        # a dozen faces whose head angles the swap keeps to within a few degrees, not all equally well
        assert low < pe["pose_error_deg"] < high < low + 5.0, pe
        line = next(ln for ln in eval_lines(trained_eval) if f"pose/expression {d[0].upper()}->" in ln)
        assert f"pose error {pe['pose_error_deg']} deg (95%: {low}..{high}); shared offset yaw" in line, line
        assert all(abs(v) <= e + 1e-3 for v, e in zip(pe["pose_offset_deg"], per_angle(pe), strict=True))
    assert trained_eval["warnings"] == []


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_it_says() -> None:
    rng = np.random.default_rng(7)
    spread = 2.5
    true_mean = spread * np.sqrt(2 / np.pi)  # per-face errors as a folded normal: mean 1.995
    covered = 0
    for draw in range(200):
        sample = np.abs(rng.normal(0.0, spread, size=64))
        low, high = bootstrap_mean_interval(sample, seed=draw)
        covered += int(low <= true_mean <= high)
    assert 0.88 <= covered / 200 <= 0.99, covered
    # four times the faces, half the width
    wide = bootstrap_mean_interval(np.abs(rng.normal(0.0, spread, size=64)))
    narrow = bootstrap_mean_interval(np.abs(rng.normal(0.0, spread, size=256)))
    assert 0.35 < (narrow[1] - narrow[0]) / (wide[1] - wide[0]) < 0.65
    assert bootstrap_mean_interval(np.array([1.5])) == (1.5, 1.5)
    assert bootstrap_mean_interval(sample, seed=3) == bootstrap_mean_interval(sample, seed=3)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean_interval(np.array([]))


def test_pose_offset_tells_a_shared_tilt_from_the_error_per_face(g1_faceset: Path) -> None:
    fs = Faceset.load(g1_faceset)
    faces, _ = model_crops(fs, fs.records[::6][:12], "whole_face", 128)
    turn = cv2.getRotationMatrix2D((64.0, 64.0), 6.0, 1.0)  # counter-clockwise on screen
    tilted = np.stack([cv2.warpAffine(f, turn, (128, 128), borderMode=cv2.BORDER_REFLECT) for f in faces])
    landmarker = _Landmarker(CFG.detector)
    try:
        block = pose_expression_block(faces, tilted, landmarker)
    finally:
        landmarker.close()
    assert block["measured"] >= 10, block
    yaw, pitch, roll = block["pose_offset_deg"]
    assert roll == pytest.approx(-6.0, abs=1.0) and abs(yaw) < 1.5 and abs(pitch) < 1.5
    assert per_angle(block)[2] == pytest.approx(abs(roll), abs=0.3)  # every face tilted alike


def test_eval_is_deterministic_for_a_fixed_seed(trained_lite: Path, trained_eval: dict[str, Any]) -> None:
    again = evaluate(trained_lite, config=CFG)
    assert _numbers(again) == _numbers(trained_eval)
    other = evaluate(trained_lite, config=EvalConfig(seed=4, device="cpu", max_faces=12, pose=False))
    # another seed samples other held-out faces of B (28 held out, 12 used)
    assert other["reconstruction"]["b"] != trained_eval["reconstruction"]["b"]


def test_eval_command_json_and_flicker(
    trained_lite: Path, trained_eval: dict[str, Any], grid: dict[str, Path], tmp_path: Path
) -> None:
    frames = read_frames(grid["g1"])
    source = write_video(tmp_path / "source.mp4", frames)
    rng = np.random.default_rng(0)
    shaky = write_video(
        tmp_path / "shaky.mp4",
        [np.clip(f.astype(np.int16) + int(rng.integers(-12, 13)), 0, 255).astype(np.uint8) for f in frames],
    )
    out = tmp_path / "eval.json"
    cmd: list[str | Path] = [
        sys.executable,
        "-m",
        "faceloom",
        "eval",
        "--model",
        trained_lite,
        "--video",
        shaky,
    ]
    cmd += ["--source", source, "--seed", "3", "--max-faces", "12", "--device", "cpu", "--json", "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    assert result["model"]["step"] == 300 and result["model"]["architecture"] == "lite"
    for d in ("a_to_b", "b_to_a"):
        for k, v in trained_eval["identity"][d].items():
            assert result["identity"][d][k] == pytest.approx(v, abs=2e-3), (d, k)
    for s in ("a", "b"):
        assert result["reconstruction"][s]["ssim"] == pytest.approx(
            trained_eval["reconstruction"][s]["ssim"], abs=2e-3
        )
    video = result["video"]
    assert video["frames"] == 75 and video["face_frames"] >= 70
    assert video["flicker_ratio"] > 1.5 and video["flicker_source"] > 0
    assert video["sharpness_ratio"] == pytest.approx(1.0, abs=0.05)  # brightness shifts add no detail
    same = video_flicker(source, source)
    assert same["flicker_ratio"] == 1.0 and same["flicker_source"] == video["flicker_source"]
    assert same["sharpness_ratio"] == 1.0
    # a blurred face is steadier than the real one: flicker alone would reward it, sharpness does not
    blurred = write_video(tmp_path / "blurred.mp4", [cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames])
    soft = video_flicker(blurred, source)
    assert soft["flicker_ratio"] < 0.9 and soft["sharpness_ratio"] < 0.7, soft


def test_eval_refuses_a_faceset_the_model_did_not_train_on(trained_lite: Path, g1_faceset: Path) -> None:
    with pytest.raises(InputError, match="held-out faces"):
        evaluate(trained_lite, a=g1_faceset, config=CFG)
    with pytest.raises(InputError, match="--video and --source"):
        evaluate(trained_lite, video=g1_faceset, config=CFG)


def test_identity_retrieval_counts_every_person_it_can_see(
    trained_lite: Path, trained_eval: dict[str, Any], g1_faceset: Path
) -> None:
    """With a third person (GRID g1) in the gallery a swap counts only when the wanted person is the
    nearest of three; with two people the count is the plain Euclidean one. A gallery faceset of A
    or B themselves adds no person: a swap nearest to it is nearest to them."""
    trained_on = json.loads((trained_lite / "model.json").read_text())["facesets"]
    with_g1 = evaluate(trained_lite, config=CFG, gallery=[g1_faceset])
    both = [trained_on["a"]["path"], g1_faceset, trained_on["b"]["path"]]
    again = evaluate(trained_lite, config=CFG, gallery=both)
    for d in ("a_to_b", "b_to_a"):
        two, three = trained_eval["identity"][d], with_g1["identity"][d]
        assert two["people"] == 2 and three["people"] == 3
        assert two["id_retrieval_all"] == two["id_retrieval_euclidean"]
        assert 0.0 <= three["id_retrieval_all"] <= two["id_retrieval_all"]
        assert three["id_retrieval"] == two["id_retrieval"]
        same = again["identity"][d]
        assert same["people"] == 3, same
        # the faceset's mean (all its faces) is not quite model.json's (the trained ones): a swap
        # may land nearer to one than the other, nothing more
        assert abs(same["id_retrieval_all"] - three["id_retrieval_all"]) <= 1.0 / three["faces"] + 1e-9
    assert [w.split(" is ")[1] for w in again["warnings"] if w.startswith("gallery")] == [
        "the same person as A",
        "the same person as B",
    ]
