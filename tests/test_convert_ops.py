"""Per-face image operations of conversion on real GRID faces: colour transfer, mask softening,
pasting back into the frame (alpha and seamless), sharpening, landmark smoothing and the
occlusion segmenter."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom.config import ConvertConfig
from faceloom.convert.blend import BORDER, add_frame_detail, paste_face, sharpen, soften_mask
from faceloom.convert.color import ColorMethod, keep_detail, match_color
from faceloom.convert.compose import Blender
from faceloom.convert.frames import FaceJob
from faceloom.convert.segment import Segmenter
from faceloom.convert.smoothing import OneEuroFilter, TrackSmoother
from faceloom.evaluation.crops import crop_landmarks
from faceloom.evaluation.sharpness import detail_energy
from faceloom.faces.align import alignment_matrix, derive_crop, transform_points, warp_crop
from faceloom.faces.faceset import FaceRecord, Faceset
from faceloom.faces.landmarks import LEFT_EYE, MOUTH, RIGHT_EYE, interocular
from faceloom.faces.masks import features_mask, hull_mask
from faceloom.media.reader import iter_video


# ---- fixtures and helpers -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def g1(g1_faceset: Path) -> Faceset:
    return Faceset.load(g1_faceset)


@pytest.fixture(scope="module")
def records(g1: Faceset) -> list[FaceRecord]:
    """g1's faces in frame order (one face per frame)."""
    return sorted(g1.records, key=lambda r: r.frame)


@pytest.fixture(scope="module")
def frames(grid: dict[str, Path]) -> dict[int, np.ndarray]:
    return {f.index: f.rgb for f in iter_video(grid["g1"])}


def stored_crop(fs: Faceset, record: FaceRecord) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(fs.image_path(record))), cv2.COLOR_BGR2RGB)


def face_and_mask(fs: Faceset, record: FaceRecord, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 ``face`` crop and its (size, size) float32 hull mask."""
    crop = derive_crop(stored_crop(fs, record), "face", size)
    return crop, hull_mask(crop_landmarks(record, "face", size), size)


def tint(img: np.ndarray, gain: tuple[float, float, float], gamma: float) -> np.ndarray:
    """A darkened, colour-cast version of a real image: per-channel gain after a gamma curve."""
    x = (img.astype(np.float32) / 255.0) ** gamma * np.array(gain, dtype=np.float32)
    return np.asarray(np.clip(np.rint(x * 255.0), 0, 255), dtype=np.uint8)


def lab_stats(img: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)[sel]
    return lab.mean(axis=0), lab.std(axis=0)


def full_frame_alpha(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The slow reference paste: warp over the whole frame, blend everywhere."""
    h, w = frame.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    a = cv2.warpAffine(mask, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)[..., None]
    f = cv2.warpAffine(face, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    out = frame.astype(np.float32) * (1 - a) + f.astype(np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def warped_mask(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return np.asarray(cv2.warpAffine(mask, matrix, (shape[1], shape[0]), flags=flags))


# ---- colour transfer ----------------------------------------------------------------------------
def test_none_is_identity_and_inputs_are_checked(g1: Faceset, records: list[FaceRecord]) -> None:
    face, mask = face_and_mask(g1, records[10], 64)
    ref = tint(face, (0.8, 0.9, 1.1), 1.2)
    assert match_color(face, ref, mask, "none") is face
    with pytest.raises(ValueError):
        match_color(face, ref[:32], mask, "rct")
    with pytest.raises(ValueError):
        match_color(face, ref, mask[:32], "rct")
    with pytest.raises(ValueError):
        match_color(face, ref, mask, "bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["rct", "lct", "hist"])
@pytest.mark.parametrize("size", [64, 256])
def test_color_transfer_moves_masked_stats_to_the_reference(
    g1: Faceset, records: list[FaceRecord], method: ColorMethod, size: int
) -> None:
    # The face and the reference are different real frames; the reference is darkened and cast blue.
    face, mask = face_and_mask(g1, records[10], size)
    other, _ = face_and_mask(g1, records[50], size)
    ref = tint(other, (0.7, 0.8, 1.15), 1.3)
    sel = mask > 0.5
    before = np.abs(face[sel].mean(0) - ref[sel].mean(0))
    assert before.min() > 10  # the tint is a real change in every channel
    kept = match_color(face, ref, mask, method)
    assert kept.shape == face.shape and kept.dtype == np.uint8
    assert np.abs(kept[sel].mean(0) - ref[sel].mean(0)).max() < 2.5  # what convert pastes: colour moved

    # the full-band transfer matches the statistics
    out = match_color(face, ref, mask, method, keep_own_detail=False)
    after = np.abs(out[sel].mean(0) - ref[sel].mean(0))
    assert after.max() < 2.5, (before, after)

    if method == "rct":  # Reinhard matches Lab mean and standard deviation
        mu_o, sd_o = lab_stats(out, sel)
        mu_r, sd_r = lab_stats(ref, sel)
        assert np.abs(mu_o - mu_r).max() < 1.5
        assert np.abs(sd_o / sd_r - 1).max() < 0.1
    elif method == "lct":  # linear transfer matches the RGB covariance
        c_o = np.cov(out[sel].astype(np.float64), rowvar=False)
        c_r = np.cov(ref[sel].astype(np.float64), rowvar=False)
        c_f = np.cov(face[sel].astype(np.float64), rowvar=False)
        assert np.abs(c_o - c_r).max() < 0.1 * np.abs(c_r).max()
        assert np.abs(c_o - c_r).max() < 0.25 * np.abs(c_f - c_r).max()
    else:  # histogram matching matches quantiles of every channel
        q = [5, 25, 50, 75, 95]
        for c in range(3):
            assert np.abs(np.percentile(out[sel][:, c], q) - np.percentile(ref[sel][:, c], q)).max() <= 3


@pytest.mark.parametrize("method", ["rct", "lct", "hist"])
def test_color_transfer_to_itself_changes_little(
    g1: Faceset, records: list[FaceRecord], method: ColorMethod
) -> None:
    face, mask = face_and_mask(g1, records[30], 128)
    out = match_color(face, face, mask, method)
    diff = np.abs(out.astype(int) - face)
    assert diff.mean() < 0.6 and np.percentile(diff, 99) <= 2


@pytest.mark.parametrize("method", ["rct", "lct", "hist"])
def test_color_transfer_keeps_the_new_faces_own_detail(
    g1: Faceset, records: list[FaceRecord], method: ColorMethod
) -> None:
    # A contrasty new face into a flat, dim old one (the true-face swap into a pale face of GRID
    # s4 lost 30% of its detail to rct): the colour follows the reference, the detail stays.
    face, mask = face_and_mask(g1, records[10], 128)
    other, _ = face_and_mask(g1, records[50], 128)
    ref = tint(other, (0.9, 0.85, 0.8), 0.5)
    sel = mask > 0.5
    full = match_color(face, ref, mask, method, keep_own_detail=False)
    kept = match_color(face, ref, mask, method)
    lost = detail_energy(full, mask) / detail_energy(face, mask)
    assert lost < 0.8, lost  # the full-band transfer flattens the detail with the contrast
    assert detail_energy(kept, mask) / detail_energy(face, mask) == pytest.approx(1.0, abs=0.05)
    assert np.abs(kept[sel].mean(0) - ref[sel].mean(0)).max() < 2.5
    # keep_detail: the low band is the mapped image's, the rest the face's
    np.testing.assert_array_equal(keep_detail(face, face), face)


@pytest.mark.parametrize("method", ["rct", "lct", "hist"])
def test_color_transfer_without_mask_uses_the_whole_crop(
    g1: Faceset, records: list[FaceRecord], method: ColorMethod
) -> None:
    face, _ = face_and_mask(g1, records[10], 64)
    ref = tint(face, (1.1, 0.85, 0.7), 0.9)
    out = match_color(face, ref, None, method)
    assert np.abs(out.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).max() < 2.5
    # an empty mask falls back to the whole crop too
    empty = match_color(face, ref, np.zeros(face.shape[:2], np.float32), method)
    np.testing.assert_array_equal(empty, out)


# ---- mask softening -----------------------------------------------------------------------------
def test_soften_mask_stays_inside_the_support_and_off_the_border(
    g1: Faceset, records: list[FaceRecord]
) -> None:
    size = 256
    _, mask = face_and_mask(g1, records[20], size)
    band = int(np.ceil(BORDER * size))
    for erode, blur in [(0.0, 0.1), (0.03, 0.1), (0.0, 0.0), (0.05, 0.2)]:
        soft = soften_mask(mask, erode=erode, blur=blur)
        assert soft.shape == mask.shape and soft.dtype == np.float32
        assert soft.min() >= 0 and soft.max() <= 1
        assert soft.max() == pytest.approx(1.0, abs=1e-3)
        assert np.all(soft[mask <= 0.5] == 0)  # the feather never leaves the mask
        assert np.all(soft <= np.maximum(mask, 0) + 1e-6)
        # the feathered band lies within erode + blur of the edge
        # distance to the mask's edge or to the crop's forced-zero border band
        shape = (mask > 0.5).astype(np.uint8)
        shape[:band], shape[-band:], shape[:, :band], shape[:, -band:] = 0, 0, 0, 0
        inside = cv2.distanceTransform(shape, cv2.DIST_L2, 5)
        partial = (soft > 0) & (soft < 0.999)
        assert inside[partial].max() <= (erode + blur) * size + 3
        assert np.all(soft[inside > (erode + blur) * size + 3] > 0.99)
        if erode > 0:
            assert np.all(soft[inside <= erode * size - 1] == 0)

    # a mask that fills the crop is cut away from the crop's border
    full = soften_mask(np.ones((size, size), np.float32))
    for edge in (full[:band], full[-band:], full[:, :band], full[:, -band:]):
        assert np.all(edge == 0)
    assert full[size // 2, size // 2] == pytest.approx(1.0, abs=1e-4)

    # more erosion, less mask; a negative erosion grows it (but still not onto the border)
    areas = [soften_mask(mask, erode=e).sum() for e in (-0.05, 0.0, 0.05)]
    assert areas[0] > areas[1] > areas[2]
    grown = soften_mask(mask, erode=-0.05, blur=0.0)
    hard = soften_mask(mask, erode=0.0, blur=0.0)
    assert (grown > 0.5).sum() > (hard > 0.5).sum() * 1.05
    near = cv2.distanceTransform((mask <= 0.5).astype(np.uint8), cv2.DIST_L2, 5) <= 0.05 * size - 1
    near[:band], near[-band:], near[:, :band], near[:, -band:] = False, False, False, False
    assert np.all(grown[near] == 1)
    assert np.all(soften_mask(np.ones((64, 64), np.float32), erode=-0.2)[0] == 0)


def test_a_learned_mask_never_keeps_the_old_eyes_or_mouth(g1: Faceset, records: list[FaceRecord]) -> None:
    """A learned mask part-way through training has holes at the eyes and mouth; the swap still
    replaces them, and the learned mask keeps deciding the edge."""
    size = 128
    crop, hull = face_and_mask(g1, records[20], size)
    pts = crop_landmarks(records[20], "face", size)
    holes = np.zeros_like(hull)
    for part in (RIGHT_EYE, LEFT_EYE, MOUTH):
        cv2.fillConvexPoly(holes, cv2.convexHull(pts[part].round().astype(np.int32)), (1.0,))
    learned = hull * (1 - holes)
    job = FaceJob(0, np.eye(2, 3), pts, crop, crop, learned)
    mask = Blender(ConvertConfig(mask="learned"), True, None).face_mask(job)
    assert np.all(mask[holes > 0] > 0.97)
    assert np.all(mask[features_mask(pts, size) > 0] >= learned[features_mask(pts, size) > 0])
    assert np.array_equal(mask[hull == 0], learned[hull == 0])  # outside the features: the learned edge
    edge_only = learned * (features_mask(pts, size) == 0)
    assert (edge_only > 0.5).sum() > 0.2 * (hull > 0.5).sum()


# ---- pasting back -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [128, 256])
def test_round_trip_reproduces_the_frame(
    g1: Faceset, records: list[FaceRecord], frames: dict[int, np.ndarray], size: int
) -> None:
    record = records[15]
    frame = frames[record.frame]
    matrix = alignment_matrix(record.landmarks_array, size, "face")
    crop = warp_crop(frame, matrix, size)
    soft = soften_mask(np.ones((size, size), np.float32), blur=0.05)
    out = frame.copy()
    result = paste_face(out, crop, soft, matrix)
    assert result is out  # in place

    changed = np.any(out != frame, axis=2)
    reach = warped_mask(soft, matrix, frame.shape) > 0
    assert changed.any()
    assert not np.any(changed & ~reach), "pixels outside the warped mask must stay bit-identical"
    # the face region comes back within resampling error (crop is ~2x the face here at 256 px)
    core = warped_mask(soft, matrix, frame.shape) > 0.99
    err = np.abs(out.astype(int) - frame)[core]
    assert core.sum() > 5000
    assert err.mean() < 1.5 and np.percentile(err, 99) <= 12

    # same result as the slow whole-frame warp (up to warpAffine's 1/32 px fixed-point sampling)
    diff = np.abs(full_frame_alpha(frame, crop, soft, matrix).astype(int) - out)
    assert diff.max() <= 3 and diff.mean() < 0.01


def test_paste_on_a_720p_frame_leaves_the_rest_alone(
    records: list[FaceRecord], frames: dict[int, np.ndarray]
) -> None:
    record = records[40]
    k = 720 / frames[record.frame].shape[0]
    frame = cv2.resize(frames[record.frame], (1280, 720), interpolation=cv2.INTER_CUBIC)
    landmarks = record.landmarks_array * k
    matrix = alignment_matrix(landmarks, 256, "face")
    crop = warp_crop(frame, matrix, 256)
    lm = transform_points(landmarks, matrix)
    soft = soften_mask(hull_mask(lm, 256))
    new = tint(crop, (1.2, 0.9, 0.9), 1.0)  # a visibly different face
    out = paste_face(frame.copy(), new, soft, matrix)
    changed = np.any(out != frame, axis=2)
    reach = warped_mask(soft, matrix, frame.shape) > 0
    assert changed.sum() > 20000 and not np.any(changed & ~reach)
    diff = np.abs(full_frame_alpha(frame, new, soft, matrix).astype(int) - out)
    assert diff.max() <= 3 and diff.mean() < 0.01


def test_seamless_changes_only_the_mask_and_meets_the_frame(
    records: list[FaceRecord], frames: dict[int, np.ndarray]
) -> None:
    record = records[25]
    frame = frames[record.frame]
    size = 128
    matrix = alignment_matrix(record.landmarks_array, size, "face")
    crop = warp_crop(frame, matrix, size)
    lm = transform_points(record.landmarks_array, matrix)
    soft = soften_mask(hull_mask(lm, size), blur=0.05)
    reach = warped_mask(soft, matrix, frame.shape)

    # The real face pasted back seamlessly is (nearly) the frame again.
    same = paste_face(frame.copy(), crop, soft, matrix, "seamless")
    assert not np.any(np.any(same != frame, axis=2) & ~(reach > 0))
    assert np.abs(same.astype(int) - frame)[reach > 0.99].mean() < 2.5

    # A colour-cast face: Poisson cloning pulls it back to the frame's colour at the mask's edge,
    # so it lands closer to the original frame than a plain alpha paste does.
    cast = tint(crop, (1.25, 0.9, 0.8), 1.0)
    alpha = paste_face(frame.copy(), cast, soft, matrix, "alpha")
    seamless = paste_face(frame.copy(), cast, soft, matrix, "seamless")
    changed = np.any(seamless != frame, axis=2)
    assert changed.sum() > 1000 and not np.any(changed & ~(reach > 0))
    face = reach > 0.99
    err_alpha = np.abs(alpha.astype(int) - frame)[face].mean()
    err_seamless = np.abs(seamless.astype(int) - frame)[face].mean()
    assert err_seamless < 0.5 * err_alpha, (err_seamless, err_alpha)


@pytest.mark.parametrize("method", ["alpha", "seamless"])
def test_face_partly_outside_the_frame(
    records: list[FaceRecord], frames: dict[int, np.ndarray], method: str
) -> None:
    record = records[5]
    full = frames[record.frame]
    size = 128
    matrix = alignment_matrix(record.landmarks_array, size, "face")
    crop = warp_crop(full, matrix, size)
    soft = soften_mask(np.ones((size, size), np.float32), blur=0.05)
    # cut the frame through the middle of the face: frame pixel x of `part` is x + cut of `full`
    cut = int(record.landmarks_array[30, 0])
    part = np.ascontiguousarray(full[:, cut:])
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, 0] * cut
    out = paste_face(part.copy(), crop, soft, shifted, method)  # type: ignore[arg-type]
    reach = warped_mask(soft, shifted, part.shape)
    assert not np.any(np.any(out != part, axis=2) & ~(reach > 0))
    err = np.abs(out.astype(int) - part)[reach > 0.99]
    assert err.size > 1000 and err.mean() < 2.5
    # and a face entirely outside the frame changes nothing
    away = matrix.copy()
    away[:, 2] += matrix[:, 0] * 2000
    np.testing.assert_array_equal(paste_face(part.copy(), crop, soft, away, method), part)  # type: ignore[arg-type]


def test_paste_rejects_bad_inputs_and_empty_masks(
    records: list[FaceRecord], frames: dict[int, np.ndarray]
) -> None:
    record = records[5]
    frame = frames[record.frame]
    matrix = alignment_matrix(record.landmarks_array, 64, "face")
    crop = warp_crop(frame, matrix, 64)
    zero = np.zeros((64, 64), np.float32)
    np.testing.assert_array_equal(paste_face(frame.copy(), crop, zero, matrix), frame)
    with pytest.raises(ValueError):
        paste_face(frame.copy(), crop, np.ones((32, 32), np.float32), matrix)
    with pytest.raises(ValueError):
        paste_face(frame.copy(), crop, zero, matrix, "poisson")  # type: ignore[arg-type]
    readonly = frame.copy()
    readonly.flags.writeable = False
    out = paste_face(readonly, crop, soften_mask(np.ones((64, 64), np.float32)), matrix)
    assert out is not readonly and np.any(out != frame)


def test_frame_detail_gives_back_the_band_a_small_model_cannot_make(
    data: Path, records: list[FaceRecord], frames: dict[int, np.ndarray]
) -> None:
    """On a 720x576 frame (GRID s4, a face ~235 px wide) a 64 or 128 px crop pasted back lacks the
    frame's finest detail; the frame's own band brings much of it back, never past the real face's
    (the band replaces the crop's own, it is not added on top), and nothing changes outside the
    mask. Where the crop has more pixels than the face in the frame there is no such band."""
    from faceloom.faces.detect import create_detector

    frame = next(f.rgb for f in iter_video(data / "grid" / "s4_hq" / "bbilzs.mpg"))
    detector = create_detector("mediapipe", 1)
    try:
        landmarks = detector.detect(frame)[0].landmarks
    finally:
        detector.close()
    for size in (64, 128):
        matrix = alignment_matrix(landmarks, size, "whole_face")
        soft = soften_mask(hull_mask(transform_points(landmarks, matrix), size))
        pasted = paste_face(frame.copy(), warp_crop(frame, matrix, size), soft, matrix)
        assert add_frame_detail(pasted.copy(), frame, soft, matrix, 0.0).tobytes() == pasted.tobytes()
        detailed = add_frame_detail(pasted.copy(), frame, soft, matrix, 1.0)
        core = (warped_mask(soft, matrix, frame.shape) > 0.99).astype(np.float32)
        real, crop_only, back = (detail_energy(x, core) for x in (frame, pasted, detailed))
        # 64 px: 0.52 of the real face's detail, 0.91 with the band; 128 px: 0.76, 0.87
        assert crop_only < 0.8 * real, (size, real, crop_only)
        assert crop_only + 0.4 * (real - crop_only) < back < 1.02 * real, (size, real, crop_only, back)
        changed = np.any(detailed != pasted, axis=2)
        assert changed.any() and not np.any(changed & ~(warped_mask(soft, matrix, frame.shape) > 0))
    change_at_128 = np.abs(detailed.astype(int) - pasted).mean()

    record = records[40]  # g1 at 360x288: a 256 px crop has ~1.7 pixels per frame pixel
    small = frames[record.frame]
    matrix = alignment_matrix(record.landmarks_array, 256, "face")
    soft = soften_mask(hull_mask(transform_points(record.landmarks_array, matrix), 256))
    pasted = paste_face(small.copy(), warp_crop(small, matrix, 256), soft, matrix)
    added = np.abs(add_frame_detail(pasted.copy(), small, soft, matrix, 1.0).astype(int) - pasted)
    assert added.mean() < 0.3 * change_at_128, (added.mean(), change_at_128)


def test_sharpen(g1: Faceset, records: list[FaceRecord]) -> None:
    face, _ = face_and_mask(g1, records[0], 128)
    assert sharpen(face, 0.0) is face
    out = sharpen(face, 1.0)
    assert out.shape == face.shape and out.dtype == np.uint8

    def detail(img: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())

    assert detail(out) > 1.5 * detail(face)
    assert abs(float(out.mean()) - float(face.mean())) < 1.0


# ---- landmark smoothing -------------------------------------------------------------------------
def test_one_euro_basics() -> None:
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    x0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(f(x0, 0.0), x0)
    np.testing.assert_allclose(f(x0, 0.04), x0)  # a constant stays put
    step = f(x0 + 10, 0.08)
    tau = 1 / (2 * np.pi)
    np.testing.assert_allclose(step, x0 + 10 / (1 + tau / 0.04))  # beta 0: a plain low-pass
    assert np.all(f(x0, 0.08) == x0)  # time not moving on starts over
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0.0)


def _ramp(times: np.ndarray, start: int, speed: float) -> np.ndarray:
    return np.asarray(np.clip(times - times[start], 0, None)[:, None, None] * np.array([speed, 0.0]))


def test_track_smoother_removes_jitter_but_follows_motion(records: list[FaceRecord]) -> None:
    clean = np.stack([r.landmarks_array for r in records]).astype(np.float64)  # (75, 68, 2) real
    times = np.array([r.time for r in records])
    iod = float(np.mean([interocular(p) for p in clean]))
    rng = np.random.default_rng(0)

    def run(seq: np.ndarray, strength: float = 1.0, track: int = 0) -> np.ndarray:
        smoother = TrackSmoother(strength)
        return np.stack([smoother.smooth(track, p, float(t)) for p, t in zip(seq, times, strict=True)])

    def jitter(seq: np.ndarray) -> float:
        return float(np.diff(seq, axis=0).std())

    # Real landmarks (lips moving: GRID speakers talk) plus detector-like noise of 2% of the IOD.
    noisy = clean + rng.normal(0, 0.02 * iod, clean.shape)
    out = run(noisy)
    assert jitter(out) < 0.6 * jitter(noisy)
    assert np.abs(out - clean).mean() < 0.75 * np.abs(noisy - clean).mean()
    assert jitter(run(noisy, strength=2.0)) < jitter(out) < jitter(run(noisy, strength=0.5))

    # A fast head motion (3 interocular distances per second from frame 30) is followed closely.
    motion = _ramp(times, 30, 3.0 * iod)
    lag = np.abs(run(clean + motion) - run(clean) - motion)[..., 0] / iod
    assert lag.max() < 0.1 and lag[-20:].mean() < 0.03
    step = 3.0 * 0.04  # IOD moved per frame
    assert lag.max() < step  # less than one frame behind

    # The same face four times larger is smoothed the same way (speeds are in face sizes).
    np.testing.assert_allclose(run(noisy * 4.0), run(noisy) * 4.0, rtol=1e-4, atol=1e-3)


def test_track_smoother_tracks_strength_zero_and_drop(records: list[FaceRecord]) -> None:
    pts = [r.landmarks_array for r in records[:4]]
    off = TrackSmoother(0.0)
    assert off.smooth(0, pts[0], 0.0) is pts[0]

    s = TrackSmoother(1.0)
    np.testing.assert_allclose(s.smooth(1, pts[0], 0.0), pts[0])
    second = s.smooth(1, pts[1], 0.04)
    assert second.shape == (68, 2) and second.dtype == np.float32
    # a second track does not disturb the first
    np.testing.assert_allclose(s.smooth(2, pts[3] + 50, 0.04), pts[3] + 50)
    third = s.smooth(1, pts[2], 0.08)
    assert not np.allclose(third, pts[2])
    s.drop(1)
    np.testing.assert_allclose(s.smooth(1, pts[3], 0.12), pts[3])  # fresh after drop
    # a gap of more than MAX_GAP seconds starts over too
    np.testing.assert_allclose(s.smooth(1, pts[0], 5.0), pts[0])


# ---- occlusion segmentation ---------------------------------------------------------------------
def test_segment_imports_lazily() -> None:
    code = (
        "import sys, faceloom.convert.segment, faceloom.convert.blend, faceloom.convert.color, "
        "faceloom.convert.smoothing; assert 'mediapipe' not in sys.modules, 'mediapipe imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def paste_hand(crop: np.ndarray, skin: np.ndarray, size: float, center: tuple[int, int]) -> np.ndarray:
    """Paint an open right hand (palm, four fingers, thumb, forearm), textured with real skin and
    shaded darker towards its outline, onto a copy of a crop; ``size`` is about the palm's width."""
    r = crop.shape[0]
    cx, cy = center
    s = size
    shape = np.zeros((r, r), np.uint8)

    def p(x: float, y: float) -> tuple[int, int]:
        return int(cx + x * s), int(cy + y * s)

    palm = np.array(
        [p(-0.42, -0.35), p(0.42, -0.38), p(0.45, 0.2), p(0.3, 0.55), p(-0.3, 0.55), p(-0.48, 0.15)]
    )
    cv2.fillPoly(shape, [palm.astype(np.int32)], (255,))
    cv2.rectangle(shape, p(-0.28, 0.5), p(0.28, 1.5), (255,), -1)  # wrist and forearm
    for x, length, deg in [(-0.31, 0.72, -8), (-0.1, 0.85, -3), (0.11, 0.8, 2), (0.31, 0.62, 8)]:
        a = np.deg2rad(deg)
        base = np.array([cx + x * s, cy - 0.33 * s])
        tip = base + length * s * np.array([np.sin(a), -np.cos(a)])
        cv2.line(shape, tuple(base.astype(int)), tuple(tip.astype(int)), (255,), max(2, int(0.17 * s)))
        cv2.circle(shape, tuple(tip.astype(int)), int(0.085 * s), (255,), -1)
    base = np.array([cx - 0.42 * s, cy + 0.15 * s])
    tip = base + 0.62 * s * np.array([-np.cos(np.deg2rad(40)), -np.sin(np.deg2rad(40))])
    cv2.line(shape, tuple(base.astype(int)), tuple(tip.astype(int)), (255,), int(0.2 * s))
    cv2.circle(shape, tuple(tip.astype(int)), int(0.1 * s), (255,), -1)

    alpha = cv2.GaussianBlur(shape.astype(np.float32) / 255, (0, 0), 0.8)[..., None]
    texture = cv2.resize(skin, (r, r), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    depth = cv2.distanceTransform((shape > 127).astype(np.uint8), cv2.DIST_L2, 5)
    shade = 0.75 + 0.25 * np.clip(depth / (0.12 * s), 0, 1)  # darker towards the outline
    out = crop * (1 - alpha) + texture * shade[..., None] * alpha
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


@pytest.fixture(scope="module")
def segmenter() -> Iterator[Segmenter]:
    seg = Segmenter()
    yield seg
    seg.close()


def test_segmenter_prints_nothing_the_cli_does_not_filter(
    g1: Faceset, records: list[FaceRecord], capfd: pytest.CaptureFixture[str]
) -> None:
    from faceloom.runtime import filter_native_stderr

    # mediapipe's C++ logs straight to fd 2 while its graphs start (absl; no setting reaches it):
    # only such native chatter, all within the constructor, and the CLI's filter drops all of it.
    seg = Segmenter()
    out, err = capfd.readouterr()
    assert out == ""
    chatter = re.compile(r"^(?:[IWE]\d{4} |INFO: |WARNING: All log messages before absl)")
    assert all(chatter.match(line) for line in err.splitlines()), err
    face, _ = face_and_mask(g1, records[0], 128)
    seg.face_mask(face)
    seg.close()
    assert capfd.readouterr() == ("", "")  # nothing after creation
    with filter_native_stderr():
        Segmenter().close()
    assert capfd.readouterr() == ("", "")


def test_segmenter_keeps_the_face_and_drops_background_and_hands(
    g1: Faceset, records: list[FaceRecord], segmenter: Segmenter
) -> None:
    size = 256
    record = records[20]
    stored = stored_crop(g1, record)
    crop = derive_crop(stored, "whole_face", size)
    lm = crop_landmarks(record, "whole_face", size)
    hull = hull_mask(lm, size) > 0.5

    clean = segmenter.face_mask(crop)
    assert clean.shape == (size, size) and clean.dtype == np.float32
    assert clean.min() >= 0 and clean.max() <= 1
    assert clean[hull].mean() > 0.97
    # GRID's blue backdrop shows in the crop's lower corners: it is not person.
    r, g, b = (crop[..., c].astype(int) for c in range(3))
    backdrop = (b > r + 80) & (g > r + 60)
    assert backdrop.sum() > 500
    assert clean[backdrop].mean() < 0.1

    # A hand over the mouth and nose, textured with the speaker's own cheek skin.
    skin = crop[int(lm[29, 1]) : int(lm[33, 1]), int(lm[2, 0]) + 2 : int(lm[31, 0]) - 1]
    hand_img = paste_hand(crop, skin, 70, (size // 2, 190))
    painted = np.any(hand_img != crop, axis=2)
    occluded = segmenter.face_mask(hand_img)
    assert len(segmenter.hands(hand_img)) == 1
    on_hand = hull & painted
    assert occluded[on_hand].mean() < 0.05
    eyes = np.zeros((size, size), bool)
    x0, x1 = int(lm[17, 0]), int(lm[26, 0])
    y0, y1 = int(lm[19, 1]), int(lm[41, 1]) + 5
    eyes[y0:y1, x0:x1] = True
    assert occluded[eyes & ~painted].mean() > 0.95  # the eyes, above the fingertips, stay face

    # What it does NOT do: a flat patch of backdrop colour over the lower face is still "person"
    # (selfie segmentation keeps everything in front of the person). Documented in segment.py.
    patch = crop.copy()
    patch[int(lm[33, 1]) :, int(lm[4, 0]) : int(lm[12, 0])] = crop[backdrop].mean(axis=0).astype(np.uint8)
    covered = hull & np.any(patch != crop, axis=2)
    assert segmenter.face_mask(patch)[covered].mean() > 0.5


def test_segmenter_small_crops(g1: Faceset, records: list[FaceRecord], segmenter: Segmenter) -> None:
    face, mask = face_and_mask(g1, records[30], 96)
    out = segmenter.face_mask(face)
    assert out.shape == (96, 96) and out.dtype == np.float32
    assert out[mask > 0.5].mean() > 0.95
    with pytest.raises(ValueError):
        segmenter.face_mask(face[:, :90])
