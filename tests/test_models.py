"""The model registry and every registered architecture: shapes, sharing, rebuild, learning on real faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceloom.faces.align import derive_crop
from faceloom.runtime import resolve_precision
from faceloom.train.discriminator import PatchDiscriminator
from faceloom.train.models import FaceSwapModel, create_model, get_model_class, model_names
from faceloom.train.models.original import GEMM_MAX_POSITIONS, SameConv2d

NAMES = model_names()


@pytest.fixture(scope="module", params=NAMES)
def model(request: pytest.FixtureRequest) -> FaceSwapModel:
    torch.manual_seed(0)
    return create_model(request.param)


@pytest.fixture(scope="module")
def faces_rgb(g1_faceset: Path) -> list[np.ndarray]:
    """Eight stored (head) crops of GRID speaker g1, RGB uint8, spread over the clip."""
    files = sorted((g1_faceset / "faces").glob("*.*"))
    assert len(files) >= 8
    picks = [files[i] for i in np.linspace(0, len(files) - 1, 8).astype(int)]
    out = []
    for f in picks:
        bgr = cv2.imread(str(f))
        assert bgr is not None, f
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def _batch(faces: list[np.ndarray], m: FaceSwapModel) -> torch.Tensor:
    """The model's crop at its resolution: (N, 3, R, R) float in [0, 1]."""
    crops = np.stack([derive_crop(f, m.crop, m.resolution) for f in faces])
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)


def test_registry_lists_the_three_models() -> None:
    assert {"original", "lite", "loom"} <= set(NAMES)
    for name in NAMES:
        cls = get_model_class(name)
        assert cls.name == name
        assert cls.resolution % 16 == 0
        assert cls.crop in ("face", "whole_face", "head")
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no-such-model")
    with pytest.raises(TypeError):
        create_model("lite", no_such_option=1)


def test_forward_shapes_range_and_mask(model: FaceSwapModel) -> None:
    r = model.resolution
    x = torch.rand(2, 3, r, r)
    with torch.no_grad():
        for side in ("a", "b"):
            rgb, mask = model(x, side)
            assert rgb.shape == (2, 3, r, r) and rgb.dtype == torch.float32
            assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
            if model.has_mask:
                assert mask is not None and mask.shape == (2, 1, r, r)
                assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
            else:
                assert mask is None
            raw = model.decoders[side](model.encode(x))
            assert raw.shape[1] == (4 if model.has_mask else 3)
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(1, 3, r // 2, r // 2), "a")


def test_bf16_autocast_matches_fp32(model: FaceSwapModel) -> None:
    """The bf16 path (incl. the im2col convs of the 4x4 layers) computes the same function."""
    r = model.resolution
    x = torch.rand(2, 3, r, r, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, _ = model(x, "a")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = model(x, "a")
    assert low.dtype == torch.float32
    assert float((low - ref).abs().max()) < 0.05


def test_shared_encoder_separate_decoders(model: FaceSwapModel) -> None:
    dec_a = dict(model.decoders["a"].named_parameters())
    dec_b = dict(model.decoders["b"].named_parameters())
    assert dec_a.keys() == dec_b.keys() and dec_a
    assert all(dec_a[k].data_ptr() != dec_b[k].data_ptr() for k in dec_a)
    enc_ptrs = {p.data_ptr() for p in model.encoder.parameters()}
    assert enc_ptrs.isdisjoint(p.data_ptr() for p in model.decoders.parameters())

    m = create_model(model.name, **model.arch_config())
    m.load_state_dict(model.state_dict())
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    r = m.resolution
    rgb, _ = m(torch.rand(2, 3, r, r), "a")
    rgb.mean().backward()
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p.sub_(p.grad.sign())
    after = m.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("decoders.a.") for k in changed)
    assert not any(k.startswith("decoders.b.") for k in changed)


def test_arch_config_rebuilds_strictly(model: FaceSwapModel) -> None:
    cfg = json.loads(json.dumps(model.arch_config()))  # model.json round trip
    rebuilt = create_model(model.name, **cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, model.resolution, model.resolution)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, "b")[0], model(x, "b")[0])


@pytest.mark.parametrize(
    ("name", "kwargs"), [("lite", {"width": 16, "latent": 64}), ("loom", {"width": 16, "res_blocks": 1})]
)
def test_arch_config_keeps_non_default_options(name: str, kwargs: dict[str, int]) -> None:
    m = create_model(name, **kwargs)
    assert {k: m.arch_config()[k] for k in kwargs} == kwargs
    create_model(name, **m.arch_config()).load_state_dict(m.state_dict(), strict=True)
    with pytest.raises(RuntimeError):  # a default-sized network has different shapes
        create_model(name).load_state_dict(m.state_dict(), strict=True)


def test_original_parameter_count_matches_faceswap() -> None:
    """Count faceswap's layer list by hand: conv k*k*in*out + out, dense in*out + out."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout + cout

    def dense(i: int, o: int) -> int:
        return i * o + o

    encoder = (
        conv(5, 3, 128)  # Conv2DBlock(128)
        + conv(5, 128, 256)  # Conv2DBlock(256)
        + conv(5, 256, 512)  # Conv2DBlock(512)
        + conv(5, 512, 1024)  # Conv2DBlock(1024)
        + dense(4 * 4 * 1024, 1024)  # Dense(encoder_dim=1024)
        + dense(1024, 4 * 4 * 1024)  # Dense(4*4*1024)
        + conv(3, 1024, 512 * 4)  # UpscaleBlock(512)
    )
    decoder = (
        conv(3, 512, 256 * 4)  # UpscaleBlock(256)
        + conv(3, 256, 128 * 4)  # UpscaleBlock(128)
        + conv(3, 128, 64 * 4)  # UpscaleBlock(64)
        + conv(5, 64, 3)  # Conv2DOutput(3, 5)
    )
    assert encoder + 2 * decoder == 82_062_470
    m = create_model("original")
    assert sum(p.numel() for p in m.encoder.parameters()) == encoder
    assert sum(p.numel() for p in m.decoders["a"].parameters()) == decoder
    assert sum(p.numel() for p in m.parameters()) == encoder + 2 * decoder

    low = create_model("original", lowmem=True)  # lowmem: no 1024 conv, Dense(512) from 8x8x512
    low_encoder = (
        conv(5, 3, 128) + conv(5, 128, 256) + conv(5, 256, 512)
        + dense(8 * 8 * 512, 512) + dense(512, 4 * 4 * 1024) + conv(3, 1024, 512 * 4)
    )  # fmt: skip
    assert sum(p.numel() for p in low.encoder.parameters()) == low_encoder


def test_original_defaults_are_faceswaps() -> None:
    cls = get_model_class("original")
    d = cls.train_defaults
    assert (cls.resolution, cls.crop, cls.has_mask) == (64, "face", False)
    assert (d.learning_rate, d.adam_eps, d.batch_size, d.warmup_steps) == (5e-5, 1e-7, 16, 0)
    assert (d.ssim_weight, d.mse_weight, d.eye_weight, d.mouth_weight, d.coverage) == (1, 1, 3, 2, 1.0)
    assert d.warp_strength == 1.0  # faceswap's grid warp, 5 px at 256
    assert d.ema_decay == 0.0  # faceswap saves the raw trained weights


@pytest.mark.parametrize(("k", "stride", "size"), [(5, 2, 64), (5, 2, 8), (3, 1, 4), (5, 1, 12)])
def test_same_conv_pads_like_tensorflow(k: int, stride: int, size: int) -> None:
    torch.manual_seed(0)
    conv = SameConv2d(8, 6, k, stride)
    x = torch.randn(2, 8, size, size)
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    lo, hi = total // 2, total - total // 2  # TF: the smaller half before
    ref = F.conv2d(F.pad(x, (lo, hi, lo, hi)), conv.weight, conv.bias, stride)
    with torch.no_grad():
        assert torch.allclose(conv(x), ref, atol=1e-5)
        out = ref.shape[-1] * ref.shape[-2]
        if out <= GEMM_MAX_POSITIONS:  # the im2col path under bf16 gives the same numbers
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = conv(x)
            assert torch.allclose(low.float(), ref, atol=0.05 * float(ref.abs().max()))
    conv.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x).float().square().mean().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("size", [64, 128])
def test_patch_discriminator(size: int) -> None:
    d = PatchDiscriminator(in_ch=3, base=16, layers=3)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    logits = d(x)
    assert logits.shape == (2, 1, size // 8 - 2, size // 8 - 2) and logits.dtype == torch.float32
    logits.mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert PatchDiscriminator()(torch.rand(1, 3, 128, 128)).shape == (1, 1, 14, 14)
    with pytest.raises(ValueError):
        PatchDiscriminator(layers=0)


STEPS = {"lite": 10, "original": 8, "loom": 12}


@pytest.mark.parametrize("name", NAMES)
def test_learns_real_faces(name: str, faces_rgb: list[np.ndarray]) -> None:
    """A few Adam steps on real face crops (four per side) bring the reconstruction error down."""
    torch.manual_seed(0)
    m = create_model(name)
    xa, xb = _batch(faces_rgb[:4], m), _batch(faces_rgb[4:], m)
    assert 0.05 < float(xa.mean()) < 0.95 and float(xa.std()) > 0.05  # real pixels, not blank

    def mse() -> float:
        with torch.no_grad():
            return float(sum(F.mse_loss(m(x, s)[0], x) for x, s in ((xa, "a"), (xb, "b"))))

    start = mse()
    opt = torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.9, 0.999), fused=True)
    # The trainer's own precision rule: bf16 where the CPU has it, else fp32 (emulated bf16 on an
    # AVX2-only CPU made this test take minutes).
    dtype = resolve_precision("auto", "cpu")
    for _ in range(STEPS.get(name, 6)):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            z = m.encode(torch.cat([xa, xb]))
            za, zb = z.chunk(2)
            (ra, _), (rb, _) = m.decode(za, "a"), m.decode(zb, "b")
        (F.mse_loss(ra, xa) + F.mse_loss(rb, xb)).backward()
        opt.step()
    assert mse() < 0.8 * start


def test_multiscale_dssim_sums_pooled_scales_and_stops_at_the_window(faces_rgb: list[np.ndarray]) -> None:
    from faceloom.metrics import ssim_torch
    from faceloom.train.losses import reconstruction_loss

    crops = np.stack([derive_crop(f, "whole_face", 128) for f in faces_rgb[:4]])
    target = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
    pred = torch.roll(target, shifts=6, dims=3)  # the right face, put 6 px off
    weights = torch.ones_like(target[:, :1])
    single, parts1 = reconstruction_loss(pred, target, weights, ssim_scales=1)
    multi, parts4 = reconstruction_loss(pred, target, weights, ssim_scales=4)
    expected, p, t = 0.0, pred, target
    for _ in range(4):  # 128, 64, 32, 16 px
        expected += 1.0 - float(ssim_torch(p, t, mask=torch.ones_like(p[:, :1])))
        p, t = F.avg_pool2d(p, 2), F.avg_pool2d(t, 2)
    assert parts4["dssim_ms"] == pytest.approx(expected, rel=1e-5)
    assert parts4["dssim"] == pytest.approx(parts1["dssim"]) and "dssim_ms" not in parts1
    assert float(multi - single) == pytest.approx(expected - parts1["dssim"], rel=1e-5)
    # 8 px is under the 11 px window: asking for more scales adds nothing.
    assert reconstruction_loss(pred, target, weights, ssim_scales=9)[1]["dssim_ms"] == pytest.approx(expected)
    same, parts_same = reconstruction_loss(target, target, weights, ssim_scales=4)
    assert parts_same["dssim_ms"] < 1e-4 and float(same) < 1e-4


def test_band_loss_charges_lost_detail_and_not_a_smooth_shift(faces_rgb: list[np.ndarray]) -> None:
    from dataclasses import replace

    from faceloom.train.losses import band_loss, gaussian_blur, side_loss
    from faceloom.train.models.loom import LoomModel

    crops = np.stack([derive_crop(f, "whole_face", 128) for f in faces_rgb[:4]])
    real = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0)
    weights = torch.ones_like(real[:, :1])
    blurred = gaussian_blur(real, 1.5)
    brighter = (real + 0.08).clamp(0, 1)
    assert float(band_loss(real, real, weights)) < 1e-6
    # MSE finds the blur the smaller error; the band loss finds it the far larger one.
    assert float(F.mse_loss(blurred, real)) < float(F.mse_loss(brighter, real))
    assert float(band_loss(blurred, real, weights)) > 4 * float(band_loss(brighter, real, weights))
    # It is off unless an architecture's defaults weigh it, and then it is logged and added.
    batch = {"target": real, "mask": weights, "weights": weights}
    plain, parts = side_loss(LoomModel.train_defaults, blurred, None, batch)
    weighted = replace(LoomModel.train_defaults, band_weight=2.0)
    more, parts2 = side_loss(weighted, blurred, None, batch)
    assert "band" not in parts and parts2["band"] == pytest.approx(float(band_loss(blurred, real, weights)))
    assert float(more - plain) == pytest.approx(2.0 * parts2["band"], rel=1e-4)


@pytest.mark.parametrize(("name", "side"), [("loom", 192), ("loom", 256), ("loom", 320), ("lite", 128)])
def test_every_offered_side_builds_rebuilds_and_learns_a_step(
    name: str, side: int, faces_rgb: list[np.ndarray]
) -> None:
    torch.manual_seed(0)
    m = create_model(name, resolution=side)
    assert m.resolution == side and side in get_model_class(name).resolutions
    x = _batch(faces_rgb[:2], m)
    rgb, _ = m(x, "a")
    assert rgb.shape == (2, 3, side, side)
    again = create_model(name, **m.arch_config())
    again.load_state_dict(m.state_dict(), strict=True)
    assert again.resolution == side
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    loss = F.mse_loss(m(x, "a")[0], x)
    loss.backward()
    opt.step()
    assert float(F.mse_loss(m(x, "a")[0], x)) < float(loss)
    with pytest.raises(ValueError, match=rf"{name} is built at .* px, not 100"):
        create_model(name, resolution=100)


def test_icnr_upscales_start_as_nearest_neighbour_and_old_loom_models_load() -> None:
    """Each 2x2 block of a fresh ICNR upscale's output is one value (no sub-pixel grid to unlearn);
    a loom saved without the icnr and resolution options rebuilds and loads the same weights."""
    from faceloom.train.models.layers import Upscale

    torch.manual_seed(0)
    up = Upscale(16, 8, icnr=True)
    out = up(torch.rand(2, 16, 8, 8))
    blocks = out.unfold(2, 2, 2).unfold(3, 2, 2)  # (B, C, 8, 8, 2, 2)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    plain = Upscale(16, 8)(torch.rand(2, 16, 8, 8)).unfold(2, 2, 2).unfold(3, 2, 2)
    assert not torch.allclose(plain, plain[..., :1, :1].expand_as(plain))
    m = create_model("loom")
    first_up = next(u for u in m.decoders["b"].modules() if isinstance(u, Upscale))  # loom starts from ICNR
    conv = first_up[0]
    assert isinstance(conv, torch.nn.Conv2d)
    fresh = first_up(torch.rand(1, conv.in_channels, 8, 8)).unfold(2, 2, 2).unfold(3, 2, 2)
    assert torch.allclose(fresh, fresh[..., :1, :1].expand_as(fresh))
    old_arch = {k: v for k, v in m.arch_config().items() if k not in ("icnr", "resolution")}
    old = create_model("loom", **old_arch)
    old.load_state_dict(m.state_dict(), strict=True)
    assert old.resolution == 128
