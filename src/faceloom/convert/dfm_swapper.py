"""Run a DeepFaceLab ``.dfm`` through ONNX Runtime, as DeepFaceLive does (:mod:`faceloom.train.dfm`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceloom.config import ConvertConfig
from faceloom.convert.face_swapper import FaceSwapper
from faceloom.errors import FormatError, InputError
from faceloom.train.dfm import DFM_CROP

ORT_BATCH = 16


def open_dfm_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime session on ``path`` after checking it keeps DFL's ``.dfm`` contract.

    Raises:
        InputError: the file is missing; FormatError: not an ONNX file, or not a ``.dfm``.
    """
    import onnxruntime as ort

    if not path.is_file():
        raise InputError("not found", path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for any unreadable file
        raise FormatError("not an ONNX model (a .dfm is DeepFaceLab's ONNX export)", path) from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    face = inputs[0] if inputs else None
    shape = list(face.shape) if face is not None else []
    problem = None
    if face is None or "in_face" not in face.name:
        problem = f"its first input is {face.name if face else 'missing'!r}, a .dfm's is 'in_face:0'"
    elif len(inputs) > 2 or (len(inputs) == 2 and "morph_value" not in inputs[1].name):
        problem = f"inputs {[i.name for i in inputs]}: a .dfm has in_face:0 and at most morph_value:0"
    elif len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]) or shape[3] != 3:
        problem = f"in_face has shape {shape}, a .dfm's is (N, H, W, 3) with fixed H and W"
    elif shape[1] != shape[2]:
        problem = f"in_face is {shape[2]}x{shape[1]}; faceloom takes square .dfm crops only"
    elif len(outputs) != 3:
        problem = f"{len(outputs)} outputs; a .dfm has 3 (face mask, swapped face, its mask)"
    if problem:
        raise FormatError(f"not a DeepFaceLab .dfm: {problem}", path)
    return session


class DfmSwapper(FaceSwapper):
    """A ``.dfm`` model: DFL-whole_face crops in, the celebrity's face and masks out."""

    def __init__(self, path: str | Path, config: ConvertConfig) -> None:
        self.path = Path(path)
        self.session = open_dfm_session(self.path, config.threads)
        inputs = self.session.get_inputs()
        self.input_name: str = inputs[0].name
        self.morph_name: str | None = inputs[1].name if len(inputs) == 2 else None
        self.morph = float(config.morph)
        batch = inputs[0].shape[0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else ORT_BATCH
        self.resolution = int(inputs[0].shape[1])
        self.crop_type = DFM_CROP
        self.has_mask = True
        meta = self.session.get_modelmeta().custom_metadata_map
        self.name = str(meta.get("faceloom_architecture", "dfm"))
        self.trained_steps = int(meta.get("faceloom_step", 0) or 0)
        # A .dfm renders one person; faceloom's own exports say which.
        self.to = "a" if meta.get("faceloom_to", config.to) == "a" else "b"
        self.source = "a" if self.to == "b" else "b"
        self.embeddings = {"a": None, "b": None}

    def facts(self) -> dict[str, str | int | float]:
        facts: dict[str, str | int | float] = {
            "architecture": self.name,
            "format": "DeepFaceLab .dfm",
            "resolution": self.resolution,
            "crop": self.crop_type,
            "renders": str(self.to).upper(),
        }
        if self.trained_steps:
            facts["training_steps"] = self.trained_steps
        if self.morph_name:
            facts["morph"] = self.morph
        return facts

    def run(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw ``.dfm`` call: (N, R, R, 3) float32 BGR in [0, 1] -> (face mask (N, R, R, 1),
        swapped face (N, R, R, 3) BGR, its mask (N, R, R, 1)), in batches the model takes."""
        outs: list[list[np.ndarray]] = [[], [], []]
        for i in range(0, len(bgr), self.batch):
            feed: dict[str, np.ndarray] = {self.input_name: np.ascontiguousarray(bgr[i : i + self.batch])}
            if self.morph_name:
                feed[self.morph_name] = np.array([self.morph], dtype=np.float32)
            for k, o in enumerate(self.session.run(None, feed)):
                outs[k].append(np.asarray(o, dtype=np.float32))
        face_mask, celeb, celeb_mask = (np.concatenate(o) for o in outs)
        return face_mask, celeb, celeb_mask

    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        bgr = crops[..., ::-1].astype(np.float32) / 255.0
        face_mask, celeb, celeb_mask = self.run(bgr)
        faces = (np.clip(celeb[..., ::-1], 0.0, 1.0) * 255.0).round().astype(np.uint8)
        # DeepFaceLive's default: the swap covers where both the face and the new face are.
        masks = np.clip(face_mask[..., 0] * celeb_mask[..., 0], 0.0, 1.0)
        return np.ascontiguousarray(faces), masks.astype(np.float32)
