"""Export one direction of a trained model (encoder + one decoder) to ONNX for use outside PyTorch."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceloom.config.choices import Side
from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_bytes
from faceloom.train.models.base import FaceSwapModel
from faceloom.train.models.factory import load_model

OPSET = 17


class _OneWay(nn.Module):
    """Encoder + the decoder of ``side``; outputs rgb (B, 3, R, R) [and mask (B, 1, R, R)]."""

    def __init__(self, model: FaceSwapModel, side: Side) -> None:
        super().__init__()
        self.model = model
        self.side = side

    def forward(self, x: torch.Tensor) -> Any:
        rgb, mask = self.model(x, self.side)
        return (rgb, mask) if mask is not None else rgb


def export_onnx(model_dir: str | Path, out: str | Path, to: Side = "b") -> dict[str, Any]:
    """Write ``out`` (.onnx): ``face`` (B, 3, R, R) in [0, 1] -> ``rgb`` (and ``mask``) of person ``to``.

    Returns a summary (resolution, outputs, opset). Model facts go into the ONNX metadata.
    """
    import onnx

    model, mdir = load_model(model_dir, "cpu")
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
    proto = onnx.load_from_string(buf.getvalue())
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
    return {"onnx": str(out), "to": to, "resolution": res, "outputs": outputs, "opset": OPSET}
