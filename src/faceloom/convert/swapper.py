"""The model side of conversion: batches of aligned faces through a trained model dir's decoder, or
through a DeepFaceLab ``.dfm`` (:mod:`faceloom.convert.dfm_swapper`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceloom.config import ConvertConfig
from faceloom.config.choices import Side
from faceloom.convert.face_swapper import FaceSwapper
from faceloom.errors import FormatError
from faceloom.train.models.base import FaceSwapModel


def open_swapper(model: str | Path, config: ConvertConfig) -> FaceSwapper:
    """A model dir made by faceloom train, or a DeepFaceLab ``.dfm`` file."""
    path = Path(model)
    if path.suffix.lower() == ".dfm" or path.is_file():
        from faceloom.convert.dfm_swapper import DfmSwapper

        return DfmSwapper(path, config)
    return Swapper(path, config)


class Swapper(FaceSwapper):
    """The model side of conversion: loads MODEL_DIR, runs batches through one decoder."""

    def __init__(self, model_dir: str | Path, config: ConvertConfig) -> None:
        from faceloom.runtime import resolve_device, resolve_precision
        from faceloom.train.models.factory import load_model

        self.device = resolve_device(config.device)
        self.model: FaceSwapModel
        self.model, self.mdir = load_model(model_dir, self.device)
        self.to: Side = config.to
        self.source: Side = "a" if config.to == "b" else "b"
        self.resolution = self.model.resolution
        self.crop_type = self.model.crop
        self.has_mask = self.model.has_mask
        self.name = str(self.mdir.meta.get("architecture", "?"))
        self.dtype = resolve_precision(config.precision, self.device)
        if config.mask in ("learned", "both") and not self.model.has_mask:
            raise FormatError(
                f"--mask {config.mask} needs a model with a learned mask; "
                f"{self.mdir.meta['architecture']} has none (use --mask hull or segment)",
                self.mdir.root,
            )
        # channels_last measured slower here with bf16 for original and loom (102 vs 80 faces/s).
        embeddings = self.mdir.meta.get("embeddings") or {}
        self.embeddings: dict[str, np.ndarray | None] = {
            s: (np.asarray(embeddings[s], dtype=np.float32) if embeddings.get(s) else None)
            for s in ("a", "b")
        }

    def facts(self) -> dict[str, str | int | float]:
        meta = self.mdir.meta
        return {
            "architecture": str(meta.get("architecture", "?")),
            "resolution": int(self.resolution),
            "crop": str(self.crop_type),
            "training_steps": int(self.mdir.step),
            "renders": str(self.to).upper(),
        }

    @torch.no_grad()
    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        if self.dtype is not None:
            with torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype):
                rgb, mask = self.model(x, self.to)
        else:
            rgb, mask = self.model(x, self.to)
        faces = (rgb.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        masks = mask.float().clamp(0, 1)[:, 0].cpu().numpy() if mask is not None else None
        return np.ascontiguousarray(faces), masks
