"""What every face-swap architecture provides to the trainer, converter and exporter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from faceloom.checks import check_shape
from faceloom.config.choices import CropType, Side

__all__ = ["FaceSwapModel", "Side", "TrainDefaults"]


@dataclass(frozen=True)
class TrainDefaults:
    """Trainer settings an architecture comes with (``original`` keeps faceswap's exactly)."""

    learning_rate: float = 5e-5
    adam_eps: float = 1e-7
    adam_betas: tuple[float, float] = (0.5, 0.99)
    batch_size: int = 16
    warmup_steps: int = 0
    ssim_weight: float = 1.0
    mse_weight: float = 1.0
    ssim_scales: int = 1
    """DSSIM summed over this many scales (R, R/2, ...); ``weighted`` loss style only."""
    band_weight: float = 0.0
    """Weight of the L1 loss on the output's fine bands (:func:`..losses.band_loss`); ``weighted``
    loss style only."""
    eye_weight: float = 3.0
    mouth_weight: float = 2.0
    mask_loss_weight: float = 0.0  # learned-mask models: weight of the mask's own loss
    loss_style: Literal["faceswap", "weighted"] = "weighted"
    """faceswap: DSSIM/2 + MSE on mask-multiplied images, plus eye and mouth terms added on top
    (faceswap's penalised mask loss, kept exact for ``original``); weighted: one per-pixel weight
    map (0 outside the face, 1 on it, eye/mouth multipliers) normalised by its sum."""
    coverage: float = 1.0  # share of the crop the model sees (1.0 = the whole crop)
    warp_strength: float = 1.0
    """Scale of the random grid warp's offsets; 1.0 is faceswap's (N(0, 5/256 of the side))."""
    perceptual_weight: float = 0.0
    """Weight of the perceptual loss on dlib's face network's early features (:mod:`..face_features`)."""
    identity_weight: float = 0.0
    """Weight of the identity loss on swaps (distance of dlib descriptors to the wanted person's mean)."""
    true_face: float = 0.0
    """Power of the true-face discriminator on the shared latent (:mod:`faceloom.train.adversary`)."""
    ema_decay: float = 0.0
    """Cap of the decay of the weight average that is saved and swapped with
    (:mod:`faceloom.train.ema`); 0 saves the raw trained weights, as faceswap does."""


class FaceSwapModel(nn.Module):
    """One shared encoder and a decoder per person (``a`` and ``b``).

    Subclasses set ``resolutions``, ``crop``, ``has_mask`` and ``train_defaults``, build
    ``self.encoder`` and ``self.decoders = nn.ModuleDict({"a": ..., "b": ...})`` in ``__init__``
    from keyword arguments only, and store those kwargs in ``self._arch`` so ``arch_config()`` can
    rebuild the same network.
    """

    name: ClassVar[str] = ""
    resolutions: ClassVar[tuple[int, ...]] = (64,)
    """The sides (px) the architecture can be built at, the default first; an instance is built at
    one of them (``resolution``)."""
    side_from_faces: ClassVar[bool] = False
    """A new model's side is picked from the faces' detail when none is asked for
    (:func:`faceloom.train.resolution.model_side`); otherwise it is ``resolutions[0]``."""
    resolution: int = 64
    crop: CropType = "face"
    """The crop type it is trained on; an instance may take another (``create_model(crop=...)``)."""
    has_mask: ClassVar[bool] = False
    train_defaults: ClassVar[TrainDefaults] = TrainDefaults()

    encoder: nn.Module
    decoders: nn.ModuleDict

    def __init__(self, **arch: Any) -> None:
        super().__init__()
        self._arch: dict[str, Any] = dict(arch)

    @classmethod
    def check_resolution(cls, resolution: int | None) -> int:
        """The side to build at: ``resolution``, or the architecture's default when None.

        Raises:
            ValueError: the architecture is not offered at that side.
        """
        if resolution is None:
            return cls.resolutions[0]
        if resolution not in cls.resolutions:
            sides = ", ".join(str(r) for r in cls.resolutions)
            raise ValueError(f"{cls.name} is built at {sides} px, not {resolution}")
        return resolution

    def use_crop(self, crop: CropType) -> None:
        """Train and run this network on another crop type than its architecture's; it is saved
        with the architecture's settings, so the model dir rebuilds it the same way."""
        self.crop = crop
        self._arch["crop"] = crop

    def arch_config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this network: ``create_model(name, **arch_config())``."""
        return dict(self._arch)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # type: ignore[no-any-return]

    def decode(self, z: torch.Tensor, side: Side) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode a latent with one person's decoder.

        Returns:
            rgb: (B, 3, R, R) in [0, 1]; mask: (B, 1, R, R) in [0, 1] when ``has_mask``, else None.
        """
        out = self.decoders[side](z)
        if self.has_mask:
            return out[:, :3], out[:, 3:4]
        return out, None

    def forward(
        self, x: torch.Tensor, side: Side | Literal["ab"]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args: x (B, 3, R, R) in [0, 1]. Returns decode(encode(x), side).

        ``side="ab"``: the first half of the batch is person A's faces, the second half B's; the
        encoder runs once on all of them (no batch statistics, so the result equals two passes, and
        it is faster) and each half goes through its own decoder.
        """
        check_shape(x, "B 3 R R", f"{self.name} input", R=self.resolution)
        if side != "ab":
            return self.decode(self.encode(x), side)
        za, zb = self.encode(x).chunk(2)
        rgb_a, mask_a = self.decode(za, "a")
        rgb_b, mask_b = self.decode(zb, "b")
        masks = torch.cat([mask_a, mask_b]) if mask_a is not None and mask_b is not None else None
        return torch.cat([rgb_a, rgb_b]), masks
