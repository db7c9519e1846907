"""Build an architecture by name, or load a trained one from its model dir (timm's factory)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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


def start_from(mdir: ModelDir, resolution: int | None = None) -> FaceSwapModel:
    """A new model starting from a trained dir's saved weights (``--init-from``), at ``resolution``
    (None: the trained model's own side).

    At another side every conv carries over as it is (the convs do not depend on the side) and
    the dense bottleneck's cells are resampled (:func:`resized_state`): progressive resolution, a
    bigger model started from a smaller one that trained at a fraction of the cost per step.

    Raises:
        ValueError: the architecture is not built at ``resolution``.
    """
    arch = dict(mdir.meta.get("arch", {}))
    if resolution is not None:
        arch["resolution"] = resolution
    model = create_model(mdir.meta["architecture"], **arch)
    model.load_state_dict(resized_state(mdir.load_weights(), model), strict=True)
    return model


def resized_state(state: dict[str, torch.Tensor], model: FaceSwapModel) -> dict[str, torch.Tensor]:
    """``state`` of ``model``'s architecture, fitted to ``model``'s side (as it is at the same side).

    Only the encoder's dense bottleneck depends on the side: ``dense1`` reads and ``dense2``
    writes a (deep, s, s) grid of cells. Their weights are resized over the grid (bilinear) as an
    image of the face would be, and ``dense1``'s scaled by s² / s'², so a latent sums the same
    amount of signal from the bigger grid.

    Raises:
        ValueError: a tensor other than the bottleneck's does not fit.
    """
    target = model.state_dict()
    deep, side = (int(getattr(model.encoder, k)) for k in ("deep", "side"))

    def grid(cells: int) -> int:
        return math.isqrt(cells // deep)

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        want = target[key].shape
        if value.shape == want:
            out[key] = value
        elif key == "encoder.dense1.weight":  # (latent, deep * s * s)
            s = grid(value.shape[1])
            cells = value.reshape(value.shape[0], deep, s, s)
            out[key] = _resize(cells, side).flatten(1) * (s * s) / (side * side)
        elif key == "encoder.dense2.weight":  # (deep * s * s, latent)
            s = grid(value.shape[0])
            cells = value.t().reshape(value.shape[1], deep, s, s)
            out[key] = _resize(cells, side).flatten(1).t().contiguous()
        elif key == "encoder.dense2.bias":  # (deep * s * s,)
            s = grid(value.shape[0])
            out[key] = _resize(value.reshape(1, deep, s, s), side).flatten()
        else:
            raise ValueError(f"{key}: {tuple(value.shape)} does not fit {tuple(want)}")
    return out


def _resize(cells: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, s, s) -> (N, C, side, side), bilinear (antialiased when shrinking)."""
    size = (side, side)
    return F.interpolate(cells.float(), size=size, mode="bilinear", align_corners=False, antialias=True)


def load_model(model_dir: str | Path, device: str = "cpu") -> tuple[FaceSwapModel, ModelDir]:
    """A trained model with its saved (inference) weights, in eval mode on ``device``, and its dir."""
    mdir = ModelDir.load(model_dir)
    model = model_from(mdir)
    model.load_state_dict(mdir.load_weights(), strict=True)
    model.eval().to(device)
    return model, mdir
