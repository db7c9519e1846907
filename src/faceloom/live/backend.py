"""Run the model at batch 1 with whichever of PyTorch and ONNX Runtime is faster for it on this
machine: ``auto`` times both on the model's own input size when the session starts."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from faceloom.config.choices import PredictBackend, Side
from faceloom.convert.face_swapper import FaceSwapper
from faceloom.convert.swapper import Swapper

TIMING_RUNS = 8
"""Timed batch-1 predictions per backend (after two warm-up runs)."""


class OnnxSwapper(FaceSwapper):
    """A faceloom model dir run through ONNX Runtime (CPU): the same faces as its :class:`Swapper`."""

    def __init__(self, swapper: Swapper, threads: int | None = None) -> None:
        import onnxruntime as ort

        from faceloom.train.export import onnx_graph

        self.inner, self.threads = swapper, threads
        self.resolution, self.crop_type, self.has_mask = (
            swapper.resolution,
            swapper.crop_type,
            swapper.has_mask,
        )
        self.name, self.to, self.source = swapper.name, swapper.to, swapper.source
        self.embeddings = swapper.embeddings
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        graph = onnx_graph(swapper.model.cpu().float(), swapper.to)
        self.session: Any = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def facts(self) -> dict[str, str | int | float]:
        return self.inner.facts()

    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
        outs = self.session.run(None, {"face": x})
        faces = (np.clip(outs[0], 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
        masks = np.clip(outs[1], 0, 1)[:, 0].astype(np.float32) if self.has_mask else None
        return np.ascontiguousarray(faces), masks


def time_predict(swapper: FaceSwapper, runs: int = TIMING_RUNS) -> float:
    """Median seconds of one batch-1 prediction on a fixed random face."""
    crop = np.random.default_rng(0).integers(0, 256, (1, swapper.resolution, swapper.resolution, 3), np.uint8)
    for _ in range(2):
        swapper.predict(crop)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        swapper.predict(crop)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def pick_backend(
    swapper: FaceSwapper, choice: PredictBackend, threads: int | None = None
) -> tuple[FaceSwapper, str, dict[str, float]]:
    """The swapper to run live, its backend's name, and the batch-1 ms of each backend timed.

    A ``.dfm`` (already ONNX Runtime) and a model on a GPU keep what they are.
    """
    if not isinstance(swapper, Swapper) or swapper.device != "cpu" or choice == "torch":
        return swapper, "onnx" if not isinstance(swapper, Swapper) else "torch", {}
    onnx = OnnxSwapper(swapper, threads)
    if choice == "onnx":
        return onnx, "onnx", {}
    ms = {"torch": time_predict(swapper) * 1000, "onnx": time_predict(onnx) * 1000}
    if ms["onnx"] < ms["torch"]:
        return onnx, "onnx", ms
    return swapper, "torch", ms


def can_retarget(swapper: FaceSwapper) -> bool:
    """A faceloom model renders either person; a ``.dfm`` only the one it was exported for."""
    return isinstance(swapper, (Swapper, OnnxSwapper))


def retarget(swapper: FaceSwapper, to: Side) -> FaceSwapper:
    """The same model rendering person ``to`` (a new object: a running prediction keeps the old).

    Raises:
        ValueError: a ``.dfm`` renders one person only.
    """
    if swapper.to == to:
        return swapper
    if isinstance(swapper, OnnxSwapper):
        inner = retarget(swapper.inner, to)
        assert isinstance(inner, Swapper)
        return OnnxSwapper(inner, swapper.threads)
    if isinstance(swapper, Swapper):
        turned = copy.copy(swapper)
        turned.to, turned.source = to, swapper.to
        return turned
    raise ValueError(f"{swapper.name} renders person {swapper.to.upper()} only")
