"""Training data: held-out splits, FaceData batches (augmentation, masks, weights, determinism, yaw
balance) and the Prefetcher, on real GRID faces."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom.config.choices import CropType
from faceloom.faces.align import derive_crop, subcrop_box, umeyama
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.landmarks import LEFT_EYE, RIGHT_EYE
from faceloom.faces.masks import hull_mask, region_weights
from faceloom.train.augment import IBUG_MIRROR, AugmentConfig
from faceloom.train.data import Batch, FaceData, region_weights_fast
from faceloom.train.holdout import HoldOut, split_holdout
from faceloom.train.prefetch import MAX_GPU_WORKERS, Prefetcher, prefetch_plan

R = 64


# ---- fixtures and helpers -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def g1(g1_faceset: Path) -> Faceset:
    return Faceset.load(g1_faceset)


@pytest.fixture(scope="module")
def multi(grid: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Faceset:
    """Four GRID clips, every third frame: 4 sources of 25 faces."""
    from faceloom.config import ExtractConfig
    from faceloom.extract import extract

    out = tmp_path_factory.mktemp("facesets") / "multi"
    extract([grid["g1"], grid["g2"], grid["g3"], grid["g3b"]], out, ExtractConfig(every_n=3))
    return Faceset.load(out)


@pytest.fixture(scope="module")
def data64(g1: Faceset) -> FaceData:
    return FaceData(g1, [r.id for r in g1.records], crop="face", resolution=R, seed=7)


def fake_faceset(root: Path, sizes: dict[str, int]) -> Faceset:
    """Rows only (no images), listed in a scrambled order: enough for split_holdout."""
    rows = [
        FaceRecord(
            id=f"{src}_{f:06d}_0",
            file=f"faces/{src}_{f:06d}_0.jpg",
            source=src,
            frame=f,
            time=f / 25.0,
            track=0,
            bbox=[0.0, 0.0, 1.0, 1.0],
            score=1.0,
            landmarks=[],
            matrix=[],
            size=384,
            yaw=0.0,
            pitch=0.0,
            roll=0.0,
            blur=0.0,
            detector="fake",
        )
        for src, n in sizes.items()
        for f in range(n)
    ]
    order = np.random.default_rng(0).permutation(len(rows))
    return Faceset(root, {"crop": "head", "size": 384}, [rows[i] for i in order])


def stored_rgb(fs: Faceset, rec: FaceRecord) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(fs.image_path(rec))), cv2.COLOR_BGR2RGB)


def reference_crop(stored: np.ndarray, crop: CropType, size: int, coverage: float = 1.0) -> np.ndarray:
    """The crop derive_crop cuts (its box, coverage share around the centre), supersampled 4x with
    bicubic and area-averaged down: the alias-free ``size`` px version, float32 in [0, 1].

    derive_crop puts the box corner on pixel centre 0, so 4x pixel b sits at (b + 0.5) / 4 - 0.5.
    """
    x0, y0, side = subcrop_box("head", stored.shape[0], crop)
    x0, y0 = x0 + side * (1 - coverage) / 2, y0 + side * (1 - coverage) / 2
    k = 4 * size / (side * coverage)
    m = np.array([[k, 0.0, -k * x0 + 1.5], [0.0, k, -k * y0 + 1.5]])
    big = cv2.warpAffine(
        stored, m, (4 * size, 4 * size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
    )
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def unflip(target: np.ndarray, pts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an image and its landmarks back (x -> size - 1 - x, iBUG mirror permutation)."""
    back = pts.copy()
    back[:, 0] = size - 1 - back[:, 0]
    return target[:, ::-1], back[IBUG_MIRROR]


# ---- split_holdout ------------------------------------------------------------------------------
def test_holdout_single_source_is_last_contiguous_block(g1: Faceset) -> None:
    h = split_holdout(g1, share=0.1)
    assert h.mode == "blocks"
    assert h.holdout_ids and h.train_ids
    assert not set(h.train_ids) & set(h.holdout_ids)
    assert set(h.train_ids) | set(h.holdout_ids) == {r.id for r in g1.records}
    frames = {r.id: r.frame for r in g1.records}
    held = sorted(frames[i] for i in h.holdout_ids)
    assert held == list(range(held[0], held[0] + len(held)))  # one contiguous run of frames
    assert held[-1] == max(frames.values())  # at the end of the clip
    assert min(held) > max(frames[i] for i in h.train_ids)
    assert 0.08 <= len(held) / len(frames) <= 0.15
    assert split_holdout(g1, share=0.1) == h  # deterministic
    assert "contiguous" in h.description


def test_holdout_whole_sources_from_real_clips(multi: Faceset) -> None:
    sources = {r.id: r.source for r in multi.records}
    assert len(set(sources.values())) == 4
    h = split_holdout(multi, share=0.25)
    assert h.mode == "sources"
    held_src = {sources[i] for i in h.holdout_ids}
    train_src = {sources[i] for i in h.train_ids}
    assert len(held_src) == 1 and not held_src & train_src
    assert len(h.holdout_ids) + len(h.train_ids) == len(multi.records)
    assert split_holdout(multi, share=0.25) == h
    assert HoldOut.from_json(h.to_json()) == h
    # 10% of 100 faces is far below one whole 25-face clip: blocks of each clip instead.
    blocks = split_holdout(multi, share=0.1)
    assert blocks.mode == "blocks"
    by_src = Counter(sources[i] for i in blocks.holdout_ids)
    assert set(by_src) == set(sources.values())
    rows = multi.by_id()
    for src in by_src:
        held = [rows[i].frame for i in blocks.holdout_ids if sources[i] == src]
        kept = [rows[i].frame for i in blocks.train_ids if sources[i] == src]
        assert min(held) > max(kept)


def test_holdout_picks_sources_closest_to_share(tmp_path: Path) -> None:
    fs = fake_faceset(tmp_path, {"a": 120, "b": 45, "c": 31, "d": 12, "e": 9, "f": 3})
    h = split_holdout(fs, share=0.1)  # 220 faces: 22 wanted; 12 + 9 = 21 is closest
    assert h.mode == "sources"
    assert {i.split("_")[0] for i in h.holdout_ids} == {"d", "e"}
    assert h == split_holdout(fake_faceset(tmp_path, {"a": 120, "b": 45, "c": 31, "d": 12, "e": 9, "f": 3}))
    assert "2 of 6 whole sources" in h.description


def test_holdout_two_sources_blocks_and_order_independent(tmp_path: Path) -> None:
    fs = fake_faceset(tmp_path, {"x": 100, "y": 60})
    h = split_holdout(fs, share=0.1)
    assert h.mode == "blocks"
    held = Counter(i.split("_")[0] for i in h.holdout_ids)
    assert held == {"x": 10, "y": 6}
    for src, n in (("x", 100), ("y", 60)):
        frames = sorted(int(i.split("_")[1]) for i in h.holdout_ids if i.startswith(src))
        assert frames == list(range(n - held[src], n))
    fs.records.reverse()
    assert set(split_holdout(fs, share=0.1).holdout_ids) == set(h.holdout_ids)


def test_holdout_tiny_faceset_holds_nothing(tmp_path: Path) -> None:
    fs = fake_faceset(tmp_path, {"a": 6, "b": 5, "c": 4})
    h = split_holdout(fs, share=0.1, min_faces=8)
    assert h.mode == "none" and h.holdout_ids == [] and len(h.train_ids) == 15
    assert "no faces held out" in h.description
    # Never everything, even when asked for nearly all of it.
    big = split_holdout(fake_faceset(tmp_path, {"a": 40}), share=0.95, min_faces=8)
    assert len(big.train_ids) >= 8 and len(big.holdout_ids) >= 8


# ---- FaceData -----------------------------------------------------------------------------------
def test_batch_shapes_dtypes_ranges(data64: FaceData) -> None:
    b = data64.batch(0, 8)
    assert len(b) == 8 and len(b.ids) == 8
    for name, ch in (("warped", 3), ("target", 3), ("mask", 1), ("weights", 1)):
        arr = getattr(b, name)
        assert arr.shape == (8, R, R, ch) and arr.dtype == np.float32, name
        assert np.isfinite(arr).all()
    for name in ("warped", "target", "mask"):
        arr = getattr(b, name)
        assert arr.min() >= 0.0 and arr.max() <= 1.0, name
    assert set(np.unique(b.weights)) <= {0.0, 1.0, 2.0, 3.0}
    assert b.landmarks.shape == (8, 68, 2)
    t = b.to_torch()
    assert t["warped"].shape == (8, 3, R, R) and t["mask"].shape == (8, 1, R, R)
    assert t["target"].is_contiguous()
    import torch

    cl = b.to_torch(channels_last=True)["target"]
    assert cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, t["target"])


def test_same_step_same_batch_other_steps_differ(g1: Faceset, data64: FaceData) -> None:
    other = FaceData(g1, [r.id for r in g1.records], crop="face", resolution=R, seed=7)
    a, b = data64.batch(5, 6), other.batch(5, 6)
    for name in ("warped", "target", "mask", "weights", "landmarks"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.ids == b.ids
    c = data64.batch(6, 6)
    assert a.ids != c.ids and not np.array_equal(a.target, c.target)
    reseeded = FaceData(g1, [r.id for r in g1.records], crop="face", resolution=R, seed=8)
    assert not np.array_equal(reseeded.batch(5, 6).warped, a.warped)
    # One face: every step and every batch position draws its own augmentation.
    one = FaceData(g1, [g1.records[0].id], crop="face", resolution=R, seed=7)
    s0, s1 = one.batch(0, 2), one.batch(1, 2)
    assert not np.array_equal(s0.warped[0], s1.warped[0])
    assert not np.array_equal(s0.warped[0], s0.warped[1])
    # Distributed ranks building their positions of the global batch get exactly their slice of it.
    lo, hi = data64.batch(5, 6, positions=range(0, 3)), data64.batch(5, 6, positions=range(3, 6))
    assert lo.ids + hi.ids == a.ids
    assert np.array_equal(np.concatenate([lo.warped, hi.warped]), a.warped)
    assert np.array_equal(np.concatenate([lo.weights, hi.weights]), a.weights)
    with pytest.raises(ValueError):
        data64.batch(5, 6, positions=[6])
    # Order of building does not matter (threads, resume): step 5 after step 9 is the same.
    data64.batch(9, 6)
    assert np.array_equal(data64.batch(5, 6).warped, a.warped)


def test_epochs_visit_every_face_once(data64: FaceData) -> None:
    n = len(data64)  # 75
    seen = np.concatenate([data64.indices(s, 5) for s in range(n // 5)])
    assert sorted(seen.tolist()) == list(range(n))
    nxt = np.concatenate([data64.indices(s, 5) for s in range(n // 5, 2 * n // 5)])
    assert sorted(nxt.tolist()) == list(range(n)) and not np.array_equal(seen, nxt)


def test_warped_differs_from_target_and_plain_target_is_the_derived_crop(
    g1: Faceset, data64: FaceData
) -> None:
    b = data64.batch(1, 4)
    for i in range(4):
        assert np.abs(b.warped[i] - b.target[i]).mean() > 0.01
    plain = data64.batch(1, 4, augment=False)
    assert np.array_equal(plain.warped, plain.target)
    fixed = data64.fixed(3)
    assert fixed.ids == data64.ids[:3]
    for i, rec in enumerate(data64.records[:3]):
        stored = stored_rgb(g1, rec)
        assert np.abs(fixed.target[i] - reference_crop(stored, "face", R)).mean() < 0.006
        # derive_crop's own R px shortcut rounds its box to whole pixels: close, not exact.
        assert np.abs(fixed.target[i] - derive_crop(stored, "face", R) / 255.0).mean() < 0.03
        assert np.array_equal(fixed.warped[i], fixed.target[i])


def test_warp_strength_scales_the_grid_warp_only(g1: Faceset) -> None:
    """The same step draws the same affine for every strength; only the warp of the input grows."""
    ids = [r.id for r in g1.records[:8]]
    moved = {}
    for strength in (0.0, 0.5, 1.0):
        aug = AugmentConfig(color=0.0, warp_strength=strength)
        b = FaceData(g1, ids, crop="face", resolution=R, seed=3, augment=aug).batch(2, 8)
        moved[strength] = (b.target, float(np.abs(b.warped - b.target).mean()))
    assert np.array_equal(moved[0.0][0], moved[1.0][0]) and np.array_equal(moved[0.5][0], moved[1.0][0])
    assert moved[0.0][1] == 0.0
    assert 0.004 < moved[0.5][1] < moved[1.0][1] * 0.8
    with pytest.raises(ValueError, match="warp_strength"):
        AugmentConfig(warp_strength=-0.1)


def test_coverage_is_the_centre_share(g1: Faceset) -> None:
    ids = [r.id for r in g1.records[:2]]
    data = FaceData(g1, ids, crop="whole_face", resolution=R, seed=0, coverage=0.8)
    got = data.fixed(2).target
    for i, rec in enumerate(data.records):
        ref = reference_crop(stored_rgb(g1, rec), "whole_face", R, coverage=0.8)
        assert np.abs(got[i] - ref).mean() < 0.006
        assert np.abs(got[i] - reference_crop(stored_rgb(g1, rec), "whole_face", R)).mean() > 0.03


def test_mask_covers_face_and_follows_a_flip(g1: Faceset) -> None:
    flip_only = AugmentConfig(rotation=0.0, scale=0.0, shift=0.0, flip=True, warp=False, color=0.0)
    ids = [r.id for r in g1.records[:6]]
    data = FaceData(g1, ids, crop="whole_face", resolution=R, seed=3, augment=flip_only)
    plain = {fid: i for i, fid in enumerate(data.ids)}
    fixed = data.fixed(6)
    c = R // 2
    assert (fixed.mask[:, c - 3 : c + 3, c - 3 : c + 3] == 1.0).all()
    assert (fixed.mask[:, :3, :3] == 0).all() and (fixed.mask[:, -3:, -3:] == 0).all()
    flipped = unflipped = 0
    for step in range(4):
        b = data.batch(step, 6)
        for i, fid in enumerate(b.ids):
            ref = plain[fid]
            mirrored = fixed.target[ref][:, ::-1]
            if np.array_equal(b.target[i], mirrored):
                flipped += 1
                assert np.abs(b.mask[i] - fixed.mask[ref][:, ::-1]).mean() < 0.01
                assert np.abs(b.weights[i] - fixed.weights[ref][:, ::-1]).mean() < 0.05
                pts = b.landmarks[i]  # iBUG order kept: subject's right eye / jaw start on image left
                assert pts[36, 0] < pts[45, 0] and pts[0, 0] < pts[16, 0] and pts[48, 0] < pts[54, 0]
            else:
                assert np.array_equal(b.target[i], fixed.target[ref])
                assert np.array_equal(b.mask[i], fixed.mask[ref])
                unflipped += 1
    assert flipped > 3 and unflipped > 3


def test_landmarks_follow_augmentation_and_eyes_get_eye_weight(g1: Faceset) -> None:
    aug = AugmentConfig(rotation=12.0, scale=0.08, shift=0.06, flip=True, warp=True, color=0.0)
    ids = [r.id for r in g1.records]
    data = FaceData(
        g1, ids, crop="face", resolution=R, seed=11, augment=aug, eye_weight=4.0, mouth_weight=2.5
    )
    fixed = data.fixed(len(data))
    b = data.batch(2, 12)
    for i, fid in enumerate(b.ids):
        pts = b.landmarks[i]
        for eye in (RIGHT_EYE, LEFT_EYE):
            x, y = np.round(pts[eye].mean(axis=0)).astype(int)
            assert b.weights[i, y, x, 0] == 4.0
        mx, my = np.round(pts[48:60].mean(axis=0)).astype(int)
        assert b.weights[i, my, mx, 0] == 2.5
        assert np.array_equal(b.mask[i, :, :, 0], hull_mask(pts, R))
        # The image moved with the points: warp the plain crop by the similarity that takes its points
        # onto the sample's points and it matches the sample on the face.
        j = data.ids.index(fid)
        target = b.target[i]
        sim = umeyama(fixed.landmarks[j], pts)
        moved = cv2.warpAffine(fixed.target[j], sim, (R, R), flags=cv2.INTER_LINEAR)
        direct = np.abs(moved - target).mean(axis=-1)
        target_f, back_f = unflip(target, pts, R)
        sim_f = umeyama(fixed.landmarks[j], back_f)
        moved_f = cv2.warpAffine(fixed.target[j], sim_f, (R, R), flags=cv2.INTER_LINEAR)
        mirrored = np.abs(moved_f - target_f).mean(axis=-1)
        face = hull_mask(pts, R) > 0.5
        face_f = face[:, ::-1]
        err = min(float(direct[face].mean()), float(mirrored[face_f].mean()))
        assert err < 0.03, (fid, err)


def test_colour_jitter_changes_colour_only_and_both_images_alike(g1: Faceset) -> None:
    ids = [r.id for r in g1.records[:8]]
    plain = FaceData(g1, ids, crop="face", resolution=R, seed=5, augment=AugmentConfig(color=0.0))
    jitter = FaceData(g1, ids, crop="face", resolution=R, seed=5, augment=AugmentConfig(color=0.3))
    a, b = plain.batch(0, 8), jitter.batch(0, 8)
    assert a.ids == b.ids
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.landmarks, b.landmarks)
    shift_t = (b.target - a.target).mean(axis=(1, 2))  # (B, 3) mean colour change
    shift_w = (b.warped - a.warped).mean(axis=(1, 2))
    assert np.abs(shift_t).max() > 0.03
    assert np.abs(shift_t - shift_w).max() < 0.01


def test_fast_region_weights_match_masks(data64: FaceData) -> None:
    b = data64.batch(3, 8)
    for pts in [*b.landmarks, b.landmarks[0] + np.array([R * 0.45, -R * 0.3], dtype=np.float32)]:
        assert np.array_equal(region_weights_fast(pts, R, 3.0, 2.0), region_weights(pts, R, 3.0, 2.0))


def test_yaw_balance_draws_rare_angles_more(g1_faceset: Path) -> None:
    fs = Faceset.load(g1_faceset)  # own copy of the rows: the yaw edit stays in memory
    for k, rec in enumerate(fs.records):
        rec.yaw = 35.0 if k % 8 == 0 else 2.0  # 10 of 75 faces turned
    rare = {rec.id for rec in fs.records if rec.yaw > 10}
    ids = [r.id for r in fs.records]

    def rare_share(data: FaceData) -> float:
        picks = np.concatenate([data.indices(s, 16) for s in range(200)])
        return float(np.mean([data.ids[j] in rare for j in picks]))

    base = FaceData(fs, ids, crop="face", resolution=32, seed=1)
    balanced = FaceData(fs, ids, crop="face", resolution=32, seed=1, yaw_balance=True)
    assert abs(rare_share(base) - 10 / 75) < 0.02
    assert 0.4 < rare_share(balanced) < 0.6
    assert balanced.probabilities is not None and balanced.probabilities.sum() == pytest.approx(1.0)
    assert np.array_equal(balanced.indices(4, 16), balanced.indices(4, 16))


def test_load_reports_progress_and_rejects_unknown_ids(g1: Faceset) -> None:
    calls: list[tuple[float, float | None]] = []
    ids = [r.id for r in g1.records[:5]]
    FaceData(g1, ids, crop="head", resolution=32, seed=0, progress=lambda p: calls.append((p.done, p.total)))
    assert calls and calls[-1] == (5, 5)
    with pytest.raises(Exception, match="not in the faceset"):
        FaceData(g1, [*ids, "nope"], crop="face", resolution=32, seed=0)


# ---- Prefetcher ---------------------------------------------------------------------------------
def test_prefetcher_returns_steps_in_order() -> None:
    rng = np.random.default_rng(0)
    delays = rng.uniform(0.0, 0.01, size=64)

    def make(step: int) -> int:
        time.sleep(float(delays[step % 64]))
        return step * 10

    with Prefetcher(make, start_step=3, depth=4, workers=3) as pre:
        assert [pre.get(s) for s in range(3, 23)] == [s * 10 for s in range(3, 23)]
        assert pre.get(40) == 400 and pre.get(41) == 410  # a jump restarts the queue there


def test_prefetcher_overlaps_work_and_reraises() -> None:
    def slow(step: int) -> int:
        time.sleep(0.05)
        return step

    n = 10
    t0 = time.perf_counter()
    with Prefetcher(slow, start_step=0, depth=2) as pre:
        for s in range(n):
            assert pre.get(s) == s
            time.sleep(0.05)  # the "model step"
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.8 * 2 * 0.05 * n  # serial would take 1.0 s

    def broken(step: int) -> int:
        if step == 2:
            raise ValueError("bad step")
        return step

    pre = Prefetcher(broken, start_step=0)
    assert pre.get(0) == 0 and pre.get(1) == 1
    with pytest.raises(ValueError, match="bad step"):
        pre.get(2)
    pre.close()
    with pytest.raises(RuntimeError):
        pre.get(3)


def test_prefetch_plan_keeps_a_fast_gpu_step_fed() -> None:
    assert prefetch_plan("cpu", world=1, cores=16) == (3, 1)  # the CPU step needs the cores itself
    depth, workers = prefetch_plan("cuda", world=1, cores=16)
    assert workers == MAX_GPU_WORKERS and depth >= workers
    assert prefetch_plan("cuda", world=2, cores=4)[1] == 1  # two ranks on 4 cores: one builder each
    build_s, step_s, n = 0.04, 0.005, 24  # a batch costs 8 GPU steps of time to build (GIL released)

    def make(step: int) -> int:
        time.sleep(build_s)
        return step

    t0 = time.perf_counter()
    with Prefetcher(make, 0, depth, workers) as pre:
        for s in range(n):
            assert pre.get(s) == s
            time.sleep(step_s)
    assert time.perf_counter() - t0 < 0.5 * build_s * n  # one builder would take build_s per step


def test_prefetched_batches_equal_direct_ones(data64: FaceData) -> None:
    names: set[str] = set()

    def make(step: int) -> Batch:
        names.add(threading.current_thread().name)
        return data64.batch(step, 4)

    with Prefetcher(make, start_step=0, depth=3, workers=2) as pre:
        got = [pre.get(s) for s in range(6)]
    for s, b in enumerate(got):
        assert np.array_equal(b.warped, data64.batch(s, 4).warped)
    assert all(n.startswith("faceloom-prefetch") for n in names)
