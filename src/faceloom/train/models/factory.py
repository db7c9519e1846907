"""Build an architecture by name, or load a trained one from its model dir (timm's factory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceloom.config.choices import CropType
from faceloom.train.modeldir import ModelDir
from faceloom.train.models.base import FaceSwapModel
from faceloom.train.models.registry import get_model_class


def create_model(name: str, **kwargs: Any) -> FaceSwapModel:
    """Build a registered architecture; kwargs override its defaults (see ``arch_config()``), and
    ``crop`` (a :data:`CropType`) the crop type it works on (None: the architecture's own)."""
    crop: CropType | None = kwargs.pop("crop", None)
    model = get_model_class(name)(**kwargs)
    if crop is not None and crop != model.crop:
        model.use_crop(crop)
    return model


def model_from(mdir: ModelDir) -> FaceSwapModel:
    """The architecture a model dir records, built with its recorded settings (fresh weights)."""
    return create_model(mdir.meta["architecture"], **mdir.meta.get("arch", {}))


def load_model(model_dir: str | Path, device: str = "cpu") -> tuple[FaceSwapModel, ModelDir]:
    """A trained model with its saved (inference) weights, in eval mode on ``device``, and its dir."""
    mdir = ModelDir.load(model_dir)
    model = model_from(mdir)
    model.load_state_dict(mdir.load_weights(), strict=True)
    model.eval().to(device)
    return model, mdir
