"""faceloom.metrics on frames of the real clips."""

from __future__ import annotations

import io
from itertools import islice, pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceloom import metrics
from faceloom.faces.align import MEAN_FACE
from faceloom.faces.landmarks import interocular
from faceloom.media.reader import iter_video


@pytest.fixture(scope="module")
def clip(grid: dict[str, Path]) -> list[np.ndarray]:
    """The first 40 frames of GRID speaker g1 (360x288 RGB uint8)."""
    return [f.rgb for f in islice(iter_video(grid["g1"]), 40)]


@pytest.fixture(scope="module")
def frame(clip: list[np.ndarray]) -> np.ndarray:
    return clip[20]


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(np.clip(img + rng.normal(0, sigma, img.shape), 0, 255), dtype=np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)


def _naive_ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al.'s definition, one window at a time (slow; small grey images only)."""
    g = cv2.getGaussianKernel(11, 1.5, ktype=cv2.CV_64F)
    w = g @ g.T
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    h, wd = x.shape
    out = np.empty((h - 10, wd - 10))
    for i in range(h - 10):
        for j in range(wd - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            out[i, j] = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return out


# ------------------------------------------------------------------------------------------ SSIM


def test_ssim_matches_the_definition(frame: np.ndarray) -> None:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[100:132, 150:190]
    other = _noisy(grey, 12.0)
    expected = _naive_ssim_map(grey.astype(np.float64), other.astype(np.float64), 255.0)
    got = metrics.ssim_map(grey, other)
    assert got.shape == expected.shape == (22, 30)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert metrics.ssim(grey, other) == pytest.approx(expected.mean(), abs=1e-9)


def test_ssim_identity_and_monotonic_in_noise(frame: np.ndarray) -> None:
    assert metrics.ssim(frame, frame) == pytest.approx(1.0, abs=1e-12)
    scores = [metrics.ssim(frame, _noisy(frame, s)) for s in (2, 5, 10, 20, 40)]
    assert all(a > b for a, b in pairwise(scores)), scores
    assert scores[0] < 1.0 and scores[-1] < 0.5


def test_ssim_monotonic_in_blur(frame: np.ndarray) -> None:
    scores = [metrics.ssim(frame, cv2.GaussianBlur(frame, (0, 0), s)) for s in (0.6, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in pairwise(scores)), scores


def test_ssim_uint8_and_float_agree(frame: np.ndarray) -> None:
    other = _jpeg(frame, 40)
    as_float = metrics.ssim(frame.astype(np.float32) / 255, other.astype(np.float32) / 255)
    assert as_float == pytest.approx(metrics.ssim(frame, other), abs=1e-6)


def test_masked_ssim_ignores_changes_outside_the_mask(frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[60:220, 110:250] = 1.0  # the face
    changed = frame.copy()
    changed[:, :90] = _noisy(frame[:, :90], 30)  # background only, > 5 px (half a window) away
    assert metrics.ssim(frame, changed) < 0.95
    assert metrics.ssim(frame, changed, mask) == pytest.approx(1.0, abs=1e-12)
    # and a change inside the mask does count
    inside = frame.copy()
    inside[100:180, 140:220] = _noisy(frame[100:180, 140:220], 30)
    assert metrics.ssim(frame, inside, mask) < metrics.ssim(frame, inside)


def test_ssim_torch_matches_numpy_and_has_gradients(clip: list[np.ndarray]) -> None:
    torch = pytest.importorskip("torch")
    a = np.stack(clip[:2]).astype(np.float64) / 255
    b = np.stack([_jpeg(clip[0], 30), _jpeg(clip[1], 60)]).astype(np.float64) / 255
    ta = torch.tensor(a).permute(0, 3, 1, 2).requires_grad_(True)
    tb = torch.tensor(b).permute(0, 3, 1, 2)
    per_image = metrics.ssim_torch(ta, tb, reduction="none")
    expected = [metrics.ssim(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(per_image.detach().numpy(), expected, atol=1e-8)
    loss = 1 - metrics.ssim_torch(ta, tb)
    loss.backward()
    assert ta.grad is not None and float(ta.grad.abs().sum()) > 0
    mask = np.zeros(a.shape[:3])
    mask[:, 60:220, 110:250] = 1
    masked = metrics.ssim_torch(ta.detach(), tb, torch.tensor(mask), reduction="none")
    np.testing.assert_allclose(
        masked.numpy(), [metrics.ssim(a[i], b[i], mask[i]) for i in range(2)], atol=1e-8
    )


def test_ssim_torch_keeps_float32_under_bf16_autocast(clip: list[np.ndarray]) -> None:
    """Variances are differences of blurred squares: a bfloat16 blur would wreck them."""
    torch = pytest.importorskip("torch")
    a = torch.tensor(np.stack(clip[:2]), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    b = torch.tensor(np.stack([_jpeg(clip[0], 30), _jpeg(clip[1], 60)]), dtype=torch.float32)
    b = b.permute(0, 3, 1, 2) / 255
    plain = metrics.ssim_torch(a, b, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = metrics.ssim_torch(a, b, reduction="none")
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ PSNR


def test_psnr_of_jpeg_is_plausible_and_ordered(frame: np.ndarray) -> None:
    assert metrics.psnr(frame, frame) == float("inf")
    q50 = metrics.psnr(frame, _jpeg(frame, 50))
    q95 = metrics.psnr(frame, _jpeg(frame, 95))
    assert 26.0 < q50 < 42.0
    assert q95 > q50 + 3.0
    # the same numbers on [0, 1] floats
    as_float = metrics.psnr(frame / 255.0, _jpeg(frame, 50) / 255.0)
    assert as_float == pytest.approx(q50, abs=1e-9)


def test_psnr_known_value_and_mask(frame: np.ndarray) -> None:
    shifted = frame.astype(np.int16)
    shifted[:, :100] = np.clip(shifted[:, :100] + 40, 0, 255)
    shifted = shifted.astype(np.uint8)
    mask = np.zeros(frame.shape[:2], bool)
    mask[:, 150:] = True
    assert metrics.psnr(frame, shifted, mask) == float("inf")
    one_off = frame.copy()
    one_off[frame < 255] += 1
    one_off[frame == 255] -= 1
    assert metrics.psnr(frame, one_off) == pytest.approx(10 * np.log10(255**2), abs=1e-9)


# ----------------------------------------------------------------------------------- validation


def test_image_metrics_reject_bad_inputs(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.ssim(frame, frame[:100])
    with pytest.raises(ValueError, match="kind"):
        metrics.psnr(frame, frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.ssim(frame.astype(np.float32), frame.astype(np.float32))
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(frame[:8, :8], frame[:8, :8])
    with pytest.raises(ValueError, match="mask must be HxW"):
        metrics.ssim(frame, frame, np.ones((10, 10)))
    with pytest.raises(ValueError, match="empty"):
        metrics.psnr(frame, frame, np.zeros(frame.shape[:2]))


# ------------------------------------------------------------------------------------ embeddings


def test_embedding_distances_and_retrieval() -> None:
    rng = np.random.default_rng(1)
    target, other = rng.normal(size=128), rng.normal(size=128)
    assert float(metrics.embedding_distance(target, target)) == 0.0
    assert float(metrics.cosine_similarity(target, 3 * target)) == pytest.approx(1.0)
    assert float(metrics.cosine_similarity(target, -target)) == pytest.approx(-1.0)
    d = metrics.embedding_distance(np.stack([target, other]), target)
    assert d.shape == (2,) and d[0] == 0 and d[1] == pytest.approx(np.linalg.norm(other - target))
    # swaps along the line from other (t=0) to target (t=1): closer to target beyond the midpoint
    t = np.linspace(0.0, 1.0, 11)[:, None]
    swaps = other + t * (target - other) + rng.normal(scale=1e-3, size=(11, 128))
    assert metrics.id_retrieval(swaps, target, other) == pytest.approx(5 / 11)
    assert metrics.id_retrieval(swaps, other, target) == pytest.approx(6 / 11)
    assert metrics.id_retrieval(np.stack([target] * 3), target, other, metric="cosine") == 1.0
    with pytest.raises(ValueError, match="sizes differ"):
        metrics.embedding_distance(target, target[:64])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        metrics.id_retrieval(target, target, other)


# ---------------------------------------------------------------------------------- landmarks/pose


def test_landmark_error_is_in_interocular_units() -> None:
    rng = np.random.default_rng(2)
    ref = np.stack([MEAN_FACE * s + o for s, o in ((180, 90), (120, 40), (260, 10))])
    ref = ref + rng.normal(scale=1.0, size=ref.shape)
    iod = metrics.interocular_distance(ref)
    assert iod == pytest.approx([interocular(r) for r in ref])
    assert metrics.landmark_error(ref, ref) == 0.0
    assert metrics.landmark_error(ref[0], ref[0]) == 0.0
    direction = np.array([0.6, 0.8])
    errors = []
    for k in (0.05, 0.1, 0.2, 0.4):
        pred = ref + k * iod[:, None, None] * direction
        errors.append(metrics.landmark_error(pred, ref))
    np.testing.assert_allclose(errors, [0.05, 0.1, 0.2, 0.4], rtol=1e-9)
    with pytest.raises(ValueError, match="68, 2"):
        metrics.landmark_error(ref[:, :51], ref[:, :51])
    with pytest.raises(ValueError, match="interocular"):
        metrics.landmark_error(np.zeros((68, 2)), np.zeros((68, 2)))


def test_pose_error_wraps_angles() -> None:
    a = np.array([[10.0, -5.0, 0.0], [179.0, 0.0, 2.0]])
    b = np.array([[13.0, -5.0, 0.0], [-179.0, 0.0, -1.0]])
    assert metrics.angle_differences(a, b).mean() == pytest.approx((3 + 0 + 0 + 2 + 0 + 3) / 6)
    assert metrics.angle_differences(a, b, signed=True) == pytest.approx(np.array([[-3, 0, 0], [-2, 0, 3]]))
    assert metrics.angle_differences(a[0], a[0]).mean() == 0.0
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        metrics.angle_differences(a, b[:1])


# -------------------------------------------------------------------------------------- flicker


def _shaken(frames: list[np.ndarray], px: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        dx, dy = rng.integers(-px, px + 1, size=2)
        out.append(np.roll(f, (int(dy), int(dx)), axis=(0, 1)))
    return out


def test_flicker_of_real_still_and_shaken_clips(clip: list[np.ndarray]) -> None:
    still = metrics.flicker([clip[0]] * 10)
    real = metrics.flicker(clip)
    shaken = metrics.flicker(_shaken(clip))
    assert still == 0.0
    assert 0.2 < real < 10.0  # a talking head on a static background
    assert shaken > 2 * real
    assert metrics.flicker_ratio(clip, clip) == 1.0
    assert metrics.flicker_ratio(_shaken(clip), clip) > 2.0
    assert metrics.flicker_ratio([clip[0]] * 5, [clip[0]] * 5) == 1.0


def test_flicker_mask(clip: list[np.ndarray]) -> None:
    h, w = clip[0].shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[60:220, 110:250] = 1.0
    # change only the background of every other frame: masked flicker stays at the clip's own
    noisy = [f if i % 2 else np.where(mask[..., None] > 0, f, _noisy(f, 20, i)) for i, f in enumerate(clip)]
    assert metrics.flicker(noisy, mask) == pytest.approx(metrics.flicker(clip, mask))
    assert metrics.flicker(noisy) > 3 * metrics.flicker(clip)
    # a per-frame mask stack gives the same answer as one static mask, from an iterator too
    stack = np.repeat(mask[None], len(clip), axis=0)
    assert metrics.flicker(clip, stack) == pytest.approx(metrics.flicker(clip, mask))
    assert metrics.flicker_ratio(iter(noisy), iter(clip), iter(stack)) == pytest.approx(1.0)
    # the mouth moves more than the whole frame does on average
    mouth = np.zeros((h, w), np.float32)
    mouth[170:215, 150:215] = 1.0
    assert metrics.flicker(clip, mouth) > metrics.flicker(clip)


def test_flicker_rejects_bad_inputs(clip: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="two frames"):
        metrics.flicker([clip[0]])
    with pytest.raises(ValueError, match="shape"):
        metrics.flicker([clip[0], clip[1][:100]])
    with pytest.raises(ValueError, match="fewer masks"):
        metrics.flicker(clip[:3], np.ones((2, *clip[0].shape[:2])))
