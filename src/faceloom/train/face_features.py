"""Losses on dlib's face-recognition network (:mod:`faceloom.faces.dlib_resnet`): a perceptual loss on
its early features (edges and texture of the face, which a pixel loss averages away) and an identity
loss pulling swaps towards the wanted person's mean descriptor."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from faceloom.config import TrainConfig
from faceloom.config.choices import CropType, Side
from faceloom.faces.align import MEAN_FACE, face_space_to_crop, transform_points
from faceloom.faces.dlib_resnet import CHIP_SIZE, DlibResNet, chip_matrix, load_dlib_resnet
from faceloom.train.data import FaceData
from faceloom.train.models.base import FaceSwapModel, TrainDefaults

PERCEPTUAL_LEVELS = 2
"""Feature maps compared: after the stem (32 ch, 35 px) and the first two levels (32 ch, 35 px;
64 ch, 18 px): local structure, before the network turns to identity."""


def crop_to_chip_grid(crop: CropType, resolution: int) -> torch.Tensor:
    """(1, 150, 150, 2) ``grid_sample`` grid (align_corners=True) that cuts dlib's chip out of a
    ``crop`` crop of ``resolution`` px, placed as dlib would for the mean face."""
    lm = transform_points(MEAN_FACE, face_space_to_crop(crop, resolution)[:2])
    to_crop = np.linalg.inv(np.vstack([chip_matrix(lm.astype(np.float64)), [0.0, 0.0, 1.0]]))
    u, v = np.meshgrid(np.arange(CHIP_SIZE, dtype=np.float64), np.arange(CHIP_SIZE, dtype=np.float64))
    pts = np.stack([u, v, np.ones_like(u)], axis=-1) @ to_crop[:2].T  # (150, 150, 2) crop px
    grid = pts * (2.0 / (resolution - 1)) - 1.0
    return torch.from_numpy(grid.astype(np.float32))[None]


class FaceFeatures:
    """dlib's network on a model's crops. Images: (B, 3, R, R) in [0, 1]."""

    def __init__(self, crop: CropType, resolution: int, device: torch.device) -> None:
        self.net: DlibResNet = load_dlib_resnet().to(device)
        self.grid = crop_to_chip_grid(crop, resolution).to(device)

    def chips(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) chips in 0..255."""
        grid = self.grid.expand(images.shape[0], -1, -1, -1)
        return F.grid_sample(images.float() * 255.0, grid, mode="bilinear", align_corners=True)

    def perceptual(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over the early feature maps of the L1 distance between prediction and target,
        each map scaled by the target's mean magnitude."""
        with torch.no_grad():
            want = self.net.features(self.chips(target), PERCEPTUAL_LEVELS)
        have = self.net.features(self.chips(pred), PERCEPTUAL_LEVELS)
        terms = [
            (h - w).abs().mean() / w.abs().mean().clamp_min(1e-6) for h, w in zip(have, want, strict=True)
        ]
        return torch.stack(terms).mean()

    def descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 128) dlib descriptors."""
        out: torch.Tensor = self.net(self.chips(images))
        return out

    def identity(self, swaps: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """Mean distance of the swaps' descriptors to ``wanted`` (128,), the person's mean."""
        distance: torch.Tensor = (self.descriptors(swaps) - wanted).norm(dim=1).mean()
        return distance


SWAPS_PER_SIDE = 4
"""Faces of each side swapped per step for the identity loss (each costs an extra model pass)."""
WANTED_FACES = 32


class DetailLoss:
    """The perceptual loss on each side's rebuilds and the identity loss on swaps of a few faces
    per step (A's faces through B's decoder towards B's mean descriptor, and the other way)."""

    def __init__(
        self, features: FaceFeatures, perceptual: float, identity: float, wanted: dict[Side, torch.Tensor]
    ) -> None:
        self.features, self.perceptual, self.identity, self.wanted = features, perceptual, identity, wanted

    def __call__(
        self,
        model: torch.nn.Module,
        preds: dict[str, torch.Tensor],
        batches: dict[str, dict[str, torch.Tensor]],
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total = next(iter(preds.values())).new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        sides: tuple[tuple[Side, Side], ...] = (("a", "b"), ("b", "a"))
        for side, other in sides:
            if self.perceptual:
                term = self.features.perceptual(preds[side], batches[side]["target"])
                parts[f"perceptual_{side}"] = float(term.detach())
                total = total + self.perceptual * term
            if self.identity:
                swaps, _ = model(batches[side]["target"][:SWAPS_PER_SIDE], other)
                term = self.features.identity(swaps, self.wanted[other])
                parts[f"identity_{side}_to_{other}"] = float(term.detach())
                total = total + self.identity * term
        return total, parts


def detail_loss(
    model: FaceSwapModel,
    defaults: TrainDefaults,
    config: TrainConfig,
    device: torch.device,
    train_ids: dict[Side, list[str]],
    faces_of: Callable[[Side, list[str]], FaceData],
) -> DetailLoss | None:
    """The detail losses a run asks for (``config``, else the architecture's ``defaults``), with each
    person's mean descriptor over up to :data:`WANTED_FACES` of their training faces; None: no weight."""
    perceptual = defaults.perceptual_weight if config.perceptual_weight is None else config.perceptual_weight
    identity = defaults.identity_weight if config.identity_weight is None else config.identity_weight
    if not (perceptual or identity):
        return None
    features = FaceFeatures(model.crop, model.resolution, device)
    wanted: dict[Side, torch.Tensor] = {}
    for side, ids in train_ids.items():
        data = faces_of(side, ids[:: max(1, len(ids) // WANTED_FACES)][:WANTED_FACES])
        with torch.no_grad():
            faces = data.fixed(len(data)).to_torch(device)["target"]
            wanted[side] = features.descriptors(faces).mean(dim=0)
    return DetailLoss(features, perceptual, identity, wanted)
