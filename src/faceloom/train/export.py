"""Export one direction of a trained model (encoder + one decoder) to ONNX for use outside PyTorch."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceloom.config.choices import CropType, Side
from faceloom.errors import FaceloomError, InputError
from faceloom.faces.align import MEAN_FACE, alignment_matrix, transform_points
from faceloom.faces.masks import hull_mask
from faceloom.fsutil import atomic_write_bytes
from faceloom.train.dfm import DFM_CROP, IN_FACE, OUTPUTS
from faceloom.train.modeldir import ModelDir
from faceloom.train.models.base import FaceSwapModel
from faceloom.train.models.factory import load_model

OPSET = 17
DFM_OPSET = 12
"""DFL writes its .dfm files at opset 12; the ONNX Runtime builds of the tools that read them do too."""


class _OneWay(nn.Module):
    """Encoder + the decoder of ``side``; outputs rgb (B, 3, R, R) [and mask (B, 1, R, R)]."""

    def __init__(self, model: FaceSwapModel, side: Side) -> None:
        super().__init__()
        self.model = model
        self.side = side

    def forward(self, x: torch.Tensor) -> Any:
        rgb, mask = self.model(x, self.side)
        return (rgb, mask) if mask is not None else rgb


class _DfmGraph(nn.Module):
    """DFL's .dfm contract around encoder + decoders: BGR NHWC in; the other side's mask, the swap
    and its mask out (see :mod:`faceloom.train.dfm`)."""

    def __init__(self, model: FaceSwapModel, to: Side, fixed_mask: torch.Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.target: Side = to
        self.source: Side = "a" if to == "b" else "b"
        self.fixed_mask = fixed_mask
        """(1, 1, R, R) mask for a model without a learned one."""

    def forward(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = face.flip(-1).permute(0, 3, 1, 2)  # NHWC BGR -> NCHW RGB
        z = self.model.encode(x)
        rgb, celeb_mask = self.model.decode(z, self.target)
        face_mask: torch.Tensor | None
        if self.fixed_mask is not None:
            celeb_mask = face_mask = self.fixed_mask.expand(x.shape[0], -1, -1, -1)
        else:
            face_mask = self.model.decode(z, self.source)[1]
        if celeb_mask is None or face_mask is None:
            raise ValueError("a model without a learned mask needs fixed_mask")
        bgr = rgb.clamp(0, 1).permute(0, 2, 3, 1).flip(-1)
        return face_mask.clamp(0, 1).permute(0, 2, 3, 1), bgr, celeb_mask.clamp(0, 1).permute(0, 2, 3, 1)


def mean_face_mask(crop: CropType, size: int) -> np.ndarray:
    """(size, size) float32 landmark hull of the mean face on a ``crop`` crop: the mask of a model
    that learned none."""
    lm = transform_points(MEAN_FACE, alignment_matrix(MEAN_FACE, size, crop))
    return np.asarray(hull_mask(lm, size, blur=size / 64), dtype=np.float32)


def export_dfm(model_dir: str | Path, out: str | Path, to: Side = "b") -> dict[str, Any]:
    """Write ``out`` (.dfm) for DeepFaceLive and the tools that read DFL's models: person ``to``'s
    face on the other's, from a model trained on DFL's whole_face crop (``--crop dfl_whole_face``)."""
    import onnx

    model, mdir = load_model(model_dir, "cpu")
    if model.crop != DFM_CROP:
        raise InputError(
            f"a .dfm takes DeepFaceLab's whole_face crop and this model was trained on {model.crop!r}; "
            f"train one with --crop {DFM_CROP}",
            mdir.root,
        )
    res = model.resolution
    fixed = None if model.has_mask else torch.from_numpy(mean_face_mask(model.crop, res))[None, None]
    graph = _DfmGraph(model, to, fixed).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (torch.rand(1, res, res, 3),),
            buf,  # type: ignore[arg-type]
            dynamo=False,
            input_names=[IN_FACE],
            output_names=list(OUTPUTS),
            dynamic_axes={IN_FACE: {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}},
            opset_version=DFM_OPSET,
        )
    proto = onnx.load_from_string(buf.getvalue())
    _finish(proto, mdir, to, res, out)
    masks = "learned" if model.has_mask else "mean-face hull"
    return {"dfm": str(out), "to": to, "resolution": res, "masks": masks, "opset": DFM_OPSET}


def export_onnx(model_dir: str | Path, out: str | Path, to: Side = "b") -> dict[str, Any]:
    """Write ``out`` (.onnx): ``face`` (B, 3, R, R) in [0, 1] -> ``rgb`` (and ``mask``) of person ``to``.

    Returns a summary (resolution, outputs, opset). Model facts go into the ONNX metadata.
    """
    import onnx

    model, mdir = load_model(model_dir, "cpu")
    res = model.resolution
    outputs = ["rgb", "mask"] if model.has_mask else ["rgb"]
    graph = onnx_graph(model, to)
    proto = onnx.load_from_string(graph)
    _finish(proto, mdir, to, res, out)
    return {"onnx": str(out), "to": to, "resolution": res, "outputs": outputs, "opset": OPSET}


def onnx_graph(model: FaceSwapModel, to: Side) -> bytes:
    """The ONNX graph (opset :data:`OPSET`) of ``model``'s encoder and ``to``'s decoder: ``face``
    (B, 3, R, R) in [0, 1] -> ``rgb`` (B, 3, R, R) [and ``mask`` (B, 1, R, R)], batch dynamic."""
    res = model.resolution
    wrapper = _OneWay(model, to).eval()
    outputs = ["rgb", "mask"] if model.has_mask else ["rgb"]
    dummy = torch.rand(1, 3, res, res)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            wrapper,
            (dummy,),
            buf,  # type: ignore[arg-type]  # file-like objects work; the stub only names paths
            dynamo=False,
            input_names=["face"],
            output_names=outputs,
            dynamic_axes={"face": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
            opset_version=OPSET,
        )
    return buf.getvalue()


def _finish(proto: Any, mdir: ModelDir, to: Side, res: int, out: str | Path) -> None:
    """Write the model's facts into the ONNX metadata, check the graph and write it atomically."""
    import onnx

    facts = {
        "faceloom_architecture": mdir.meta["architecture"],
        "faceloom_step": str(mdir.step),
        "faceloom_to": to,
        "faceloom_crop": mdir.meta["crop"],
        "faceloom_resolution": str(res),
        "faceloom_note": "outputs are synthetic faces; label anything made with them as synthetic",
        "faceloom_model_json": json.dumps({k: mdir.meta.get(k) for k in ("architecture", "arch", "crop")}),
    }
    for key, value in facts.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - exporter output is valid
        raise FaceloomError(f"exported graph failed ONNX validation: {exc}", out) from exc
    atomic_write_bytes(out, proto.SerializeToString())
