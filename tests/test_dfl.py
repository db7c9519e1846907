"""The DeepFaceLab ecosystem: DFL's whole_face alignment and the `.dfm`, out of faceloom and into its
convert, on real GRID faces (facesets of DFL and faceswap: tests/test_faceset_import.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom.faces.align import alignment_matrix, derive_crop, stored_to_crop, transform_points
from faceloom.faces.faceset import Faceset
from tests.dfl_reference import cli, dfl_transform_mat
from tests.media_helpers import read_frames


@pytest.fixture(scope="module")
def g1(g1_faceset: Path) -> Faceset:
    return Faceset.load(g1_faceset)


def test_dfl_whole_face_crop_is_deepfacelabs(g1: Faceset) -> None:
    """faceloom's dfl_whole_face matrix is DFL's get_transform_mat on the same landmarks, and the
    crop cut from the stored head crop is the one cut from the frame."""
    size = 224
    worst_matrix = worst_pixels = 0.0
    for rec in g1.records[::5]:
        frame_lm = rec.landmarks_array.astype(np.float64)
        ours = alignment_matrix(frame_lm, size, "dfl_whole_face")
        ref = dfl_transform_mat(frame_lm, size)
        # Compare where the matrices send the face's own points (pixels of the crop).
        gap = np.abs(transform_points(frame_lm, ours) - transform_points(frame_lm, ref))
        worst_matrix = max(worst_matrix, float(gap.max()))
        in_stored = transform_points(frame_lm, rec.matrix_array)
        via_stored = stored_to_crop("head", rec.size, "dfl_whole_face", size, in_stored)
        composed = via_stored @ np.vstack([rec.matrix_array, [0.0, 0.0, 1.0]])
        worst_pixels = max(
            worst_pixels,
            float(np.abs(transform_points(frame_lm, composed) - transform_points(frame_lm, ref)).max()),
        )
    # float32 corner points in cv2.getAffineTransform are DFL's; 1e-3 px is that rounding.
    assert worst_matrix < 1e-3, worst_matrix
    assert worst_pixels < 1e-3, worst_pixels
    rec = g1.records[0]
    stored = cv2.cvtColor(cv2.imread(str(g1.image_path(rec))), cv2.COLOR_BGR2RGB)
    in_stored = transform_points(rec.landmarks_array, rec.matrix_array)
    crop = derive_crop(stored, "dfl_whole_face", size, landmarks=in_stored)
    assert crop.shape == (size, size, 3)
    # DFL's whole_face puts the eyes a little above the middle and the mouth in the lower half.
    lm = transform_points(in_stored, stored_to_crop("head", rec.size, "dfl_whole_face", size, in_stored))
    assert 0.3 * size < lm[36:48, 1].mean() < 0.5 * size
    assert 0.55 * size < lm[48:68, 1].mean() < 0.8 * size
    with pytest.raises(ValueError, match="landmarks"):
        derive_crop(stored, "dfl_whole_face", size)


# ---- .dfm out and in ------------------------------------------------------------------------------
class DeepFaceLiveDFM:
    """DeepFaceLive's DFMModel (modelhub/DFLive/DFMModel.py) as its behaviour is documented: the
    first input must be named in_face, its H and W are fixed, a second input must be morph_value;
    ``convert`` resizes to the input size, feeds float32 NHWC, and takes the three outputs by
    position as (face mask, celeb face, celeb mask); it returns (celeb, celeb mask, face mask)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = self.sess.get_inputs()
        if not inputs or "in_face" not in inputs[0].name:
            raise ValueError(f"Invalid model {path}")
        self.height, self.width = inputs[0].shape[1:3]
        self.model_type = 1
        if len(inputs) == 2:
            if "morph_value" not in inputs[1].name:
                raise ValueError(f"Invalid model {path}")
            self.model_type = 2
        elif len(inputs) > 2:
            raise ValueError(f"Invalid model {path}")

    def convert(self, img: np.ndarray, morph_factor: float = 0.75) -> tuple[np.ndarray, ...]:
        """img: NHWC BGR, uint8 or float32 in [0, 1]."""
        h, w = img.shape[1:3]
        x = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        if (h, w) != (self.height, self.width):
            x = np.stack([cv2.resize(i, (self.width, self.height)) for i in x])
        feed = {"in_face:0": x}
        if self.model_type == 2:
            feed["morph_value:0"] = np.array([morph_factor], dtype=np.float32)
        out_face_mask, out_celeb, out_celeb_mask = self.sess.run(None, feed)
        return out_celeb, out_celeb_mask, out_face_mask


@pytest.fixture(scope="module")
def dfl_lite(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small lite model trained on DFL's whole_face crop (no learned mask)."""
    from faceloom.train.trainer import train
    from tests.conftest import lite_config

    out = tmp_path_factory.mktemp("dfl") / "lite_dfl"
    train(
        pair[0],
        pair[1],
        out,
        lite_config(iterations=20, crop="dfl_whole_face", eval_every=0, preview_every=0),
    )
    return out


@pytest.fixture(scope="module")
def dfl_loom(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loom (learned masks) on DFL's crop, two steps: enough for the graph, not for looks."""
    from faceloom.config import TrainConfig
    from faceloom.train.trainer import train

    out = tmp_path_factory.mktemp("dfl") / "loom_dfl"
    config = TrainConfig(
        model="loom", crop="dfl_whole_face", iterations=2, batch_size=2, eval_every=0, preview_every=0
    )
    train(pair[0], pair[1], out, config)
    return out


@pytest.mark.parametrize("which", ["dfl_lite", "dfl_loom"])
def test_dfm_export_runs_in_deepfacelive_as_in_faceloom(
    which: str, request: pytest.FixtureRequest, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    from faceloom.evaluation.crops import model_inputs
    from faceloom.train.export import mean_face_mask
    from faceloom.train.models.factory import load_model

    model_dir: Path = request.getfixturevalue(which)
    dfm = tmp_path / "swap.dfm"
    proc = cli("export", model_dir, "--dfm", dfm, "--to", "b", "--json")
    assert proc.returncode == 0, proc.stderr
    model, _ = load_model(model_dir)
    assert model.crop == "dfl_whole_face"
    res = model.resolution
    fs = Faceset.load(pair[0])
    faces = model_inputs(fs, fs.records[-6:], "dfl_whole_face", res)  # RGB uint8, aligned DFL's way

    live = DeepFaceLiveDFM(dfm)
    assert (live.height, live.width, live.model_type) == (res, res, 1)
    celeb, celeb_mask, face_mask = live.convert(np.ascontiguousarray(faces[..., ::-1]))
    assert celeb.shape == (6, res, res, 3) and celeb.dtype == np.float32
    assert celeb_mask.shape == face_mask.shape == (6, res, res, 1)

    with torch.no_grad():
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
        z = model.encode(x)
        rgb, mask_b = model.decode(z, "b")
        _, mask_a = model.decode(z, "a")
    want = rgb.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(celeb[..., ::-1] - want).max() < 1e-3
    if model.has_mask:
        assert mask_a is not None and mask_b is not None
        assert np.abs(celeb_mask[..., 0] - mask_b[:, 0].numpy()).max() < 1e-3
        assert np.abs(face_mask[..., 0] - mask_a[:, 0].numpy()).max() < 1e-3
    else:
        hull = mean_face_mask("dfl_whole_face", res)
        assert np.abs(celeb_mask[..., 0] - hull).max() < 1e-6
        assert np.abs(face_mask[..., 0] - hull).max() < 1e-6
        assert 0.2 < hull.mean() < 0.6  # the face, not the whole square nor nothing

    meta = onnx_meta(dfm)
    assert meta["faceloom_crop"] == "dfl_whole_face" and meta["faceloom_to"] == "b"
    assert int(meta["faceloom_step"]) > 0


def onnx_meta(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_convert_with_a_dfm_keeps_frames_audio_and_watermark(
    grid: dict[str, Path], dfl_lite: Path, tmp_path: Path
) -> None:
    from faceloom.media.credentials import read_credentials
    from tests.test_convert import audio_seconds

    dfm = tmp_path / "lite.dfm"
    assert cli("export", dfl_lite, "--dfm", dfm).returncode == 0
    out = tmp_path / "swapped.mp4"
    proc = cli("convert", grid["g3b"], "--model", dfm, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == summary["faces_swapped"] == len(read_frames(grid["g3b"])) == 75
    assert audio_seconds(out) == pytest.approx(audio_seconds(grid["g3b"]), abs=0.05)
    verify = cli("verify", out, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = read_credentials(out)
    assert report is not None and report.valid and report.synthetic
    assert report.model is not None and report.model["format"] == "DeepFaceLab .dfm"
    # The face changed where the .dfm put it; frames far from it did not.
    before, after = read_frames(grid["g3b"], 1)[0], read_frames(out, 1)[0]
    assert np.abs(before.astype(np.float32) - after.astype(np.float32)).max() > 40


def test_bad_dfm_and_export_inputs_say_one_line(
    grid: dict[str, Path], dfl_lite: Path, trained_lite: Path, tmp_path: Path
) -> None:
    onnx_file = tmp_path / "plain.onnx"
    assert cli("export", dfl_lite, "--onnx", onnx_file).returncode == 0
    junk = tmp_path / "junk.dfm"
    junk.write_bytes(b"not a model at all")
    cases = [
        (("convert", grid["g3b"], "--model", onnx_file, "--out", tmp_path / "a.mp4"), "in_face"),
        (("convert", grid["g3b"], "--model", junk, "--out", tmp_path / "b.mp4"), "not an ONNX model"),
        (("export", trained_lite, "--dfm", tmp_path / "c.dfm"), "--crop dfl_whole_face"),
        (("export", trained_lite), "--dfm"),
    ]
    for args, words in cases:
        proc = cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(lines) == 1 and words in lines[0], (args, proc.stderr)
    assert not (tmp_path / "c.dfm").exists()


def _toy_dfm(path: Path, outputs: int = 3, morph: bool = True, res: int = 32) -> Path:
    """A hand-made .dfm of an AMP-like model: the swap is the input blended toward pure blue (BGR
    [1, 0, 0]) by morph_value, so what comes out shows channel order and the morph value used."""
    import torch

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blue = torch.nn.Parameter(torch.tensor([1.0, 0.0, 0.0]), requires_grad=False)

        def forward(self, face: torch.Tensor, amount: torch.Tensor) -> tuple[torch.Tensor, ...]:
            m = amount.reshape(1, 1, 1, 1)
            celeb = face * (1 - m) + self.blue * m
            mask = torch.ones_like(face[..., :1]) * 0.5
            return (mask, celeb, mask * 2)[:outputs]

    names = ["out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"][:outputs]
    inputs = ["in_face:0", "morph_value:0"] if morph else ["in_face:0"]
    args = (torch.rand(1, res, res, 3), torch.tensor([0.5]))
    torch.onnx.export(
        Toy(), args, str(path), dynamo=False, input_names=inputs, output_names=names, opset_version=12,
        dynamic_axes={"in_face:0": {0: "batch"}},
    )  # fmt: skip
    return path


def test_a_morphing_dfm_takes_the_morph_value_and_bgr(tmp_path: Path) -> None:
    from faceloom.config import ConvertConfig
    from faceloom.convert.dfm_swapper import DfmSwapper
    from faceloom.errors import FormatError

    dfm = _toy_dfm(tmp_path / "amp.dfm")
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    for morph in (0.0, 0.25, 1.0):
        swapper = DfmSwapper(dfm, ConvertConfig(morph=morph))
        assert swapper.morph_name == "morph_value:0" and swapper.resolution == 32
        faces, masks = swapper.predict(crops)
        want = crops.astype(np.float64) * (1 - morph)
        want[..., 2] += 255.0 * morph  # blue is the last channel in RGB
        assert np.abs(faces.astype(np.float64) - want).max() <= 1.0
        assert masks is not None and np.allclose(masks, 0.5)  # face mask x swap mask
        assert swapper.facts()["morph"] == morph
    with pytest.raises(FormatError, match="2 outputs") as err:
        DfmSwapper(_toy_dfm(tmp_path / "two.dfm", outputs=2), ConvertConfig())
    assert "two.dfm" in str(err.value)
