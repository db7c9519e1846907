"""``original``: the classic 64 px deepfakes model, layer for layer as faceswap builds it.

Source: deepfakes/faceswap ``plugins/train/model/original.py`` (encoder/decoder) and
``lib/model/nn_blocks.py`` (``Conv2DBlock``, ``UpscaleBlock``, ``Conv2DOutput``)::

    encoder  64x64x3 -> Conv2DBlock(128) -> (256) -> (512) -> (1024)     5x5, stride 2, "same",
                        -> Flatten -> Dense(1024) -> Dense(4*4*1024)    LeakyReLU(0.1) each
                        -> Reshape(4, 4, 1024) -> UpscaleBlock(512)     -> 8x8x512
    decoder  8x8x512 -> UpscaleBlock(256) -> (128) -> (64)              3x3 conv to 4*filters,
                     -> Conv2DOutput(3, 5) (5x5 "same", sigmoid)        LeakyReLU(0.1), pixel shuffle

Details kept from faceswap:

* Convolutions use HeUniform kernels (``U(-sqrt(6/fan_in), +)``) and zero bias; Dense layers use
  Keras' GlorotUniform and zero bias.
* Keras/TensorFlow ``padding="same"`` with stride 2 pads asymmetrically (1 before, 2 after for a
  5x5 kernel on an even input); :class:`SameConv2d` reproduces that exactly. Stride-1 "same"
  convolutions pad symmetrically, as ``nn.Conv2d(padding=k // 2)`` does.
* The upscale LeakyReLU comes before the pixel shuffle (``Conv2DBlock`` then ``PixelShuffler``).
* ICNR initialisation of the upscale convolutions is faceswap's ``icnr_init`` option, off by default.
* The output activation runs in float32 (faceswap's ``Conv2DOutput`` forces a float32 sigmoid for
  mixed precision); under bf16 autocast the logits are cast up before the sigmoid.

Two deliberate layout differences that change no function: tensors are NCHW, so ``Flatten`` /
``Reshape`` order features (C, H, W) instead of Keras' (H, W, C), and ``nn.PixelShuffle`` reads the
conv channels as (C, r, r) where faceswap's ``PixelShuffler`` reads (r, r, C). Both are fixed
permutations of a layer's weights, with identically distributed initial values, so the network, its
parameter count and its training behaviour are the same; importing faceswap weights would need
those rows permuted.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

import torch
from torch import nn

from faceloom.train.models.base import FaceSwapModel, TrainDefaults
from faceloom.train.models.layers import GEMM_MAX_POSITIONS, ConvBlock, SameConv2d, SigmoidOut, Upscale, dense
from faceloom.train.models.registry import register

__all__ = [
    "FACESWAP_LEARN_MASK",
    "FACESWAP_MASK_BLUR_KERNEL",
    "FACESWAP_MASK_THRESHOLD",
    "FACESWAP_MASK_TYPE",
    "FACESWAP_PENALIZED_MASK_LOSS",
    "GEMM_MAX_POSITIONS",
    "OriginalModel",
    "SameConv2d",
    "Upscale",
]

# Faceswap's training-mask settings for this model (plugins/train/train_config.py, section
# global.loss). TrainDefaults has no field for them yet; the trainer reads these constants.
FACESWAP_MASK_TYPE: Final = "extended"  # landmark hull extended up onto the forehead
FACESWAP_PENALIZED_MASK_LOSS: Final = True  # image loss only inside the mask; eye/mouth need it
FACESWAP_MASK_BLUR_KERNEL: Final = 3  # gaussian blur of the training mask, px at 128 px
FACESWAP_MASK_THRESHOLD: Final = 4  # near-black -> 0, near-white -> 1 (0..255 scale)
FACESWAP_LEARN_MASK: Final = False  # no mask output: the decoder gives 3 channels


class OriginalEncoder(nn.Module):
    """Shared encoder. Shapes: (B, 3, 64, 64) -> (B, 512, 8, 8)."""

    def __init__(self, encoder_dim: int, lowmem: bool, icnr: bool) -> None:
        super().__init__()
        chans = [3, 128, 256, 512] if lowmem else [3, 128, 256, 512, 1024]
        self.convs = nn.Sequential(*(ConvBlock(a, b) for a, b in itertools.pairwise(chans)))
        side = 64 // 2 ** (len(chans) - 1)
        self.dense1 = dense(chans[-1] * side * side, encoder_dim)
        self.dense2 = dense(encoder_dim, 4 * 4 * 1024)
        self.upscale = Upscale(1024, 512, icnr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.convs(x).flatten(1)
        z = self.dense2(self.dense1(z)).view(-1, 1024, 4, 4)
        return self.upscale(z)  # type: ignore[no-any-return]


class OriginalDecoder(nn.Sequential):
    """One person's decoder. Shapes: (B, 512, 8, 8) -> (B, 3, 64, 64) in [0, 1]."""

    def __init__(self, icnr: bool) -> None:
        super().__init__(
            Upscale(512, 256, icnr), Upscale(256, 128, icnr), Upscale(128, 64, icnr), SigmoidOut(64, 3, 5)
        )


@register("original")
class OriginalModel(FaceSwapModel):
    """faceswap's ``original`` model: 64 px, ``face`` crop, no learned mask.

    Args:
        lowmem: faceswap's ``lowmem`` option: drop the 1024-channel conv and use a 512-wide Dense.
        icnr_init: faceswap's ``icnr_init`` option (off by default there too).

    Example:
        >>> m = OriginalModel()
        >>> rgb, mask = m(torch.rand(2, 3, 64, 64), "a")
        >>> rgb.shape, mask
        (torch.Size([2, 3, 64, 64]), None)
    """

    resolutions = (64,)
    resolution = 64
    crop = "face"  # faceswap "face" centering (its default); coverage below is 100 %
    has_mask = False  # faceswap learn_mask defaults to False
    train_defaults = TrainDefaults(
        # plugins/train/train_config.py [Optimizer]: optimizer "adam", learning_rate 5e-5,
        # epsilon_exponent -7, ada_beta_1 0.9, ada_beta_2 0.999, ada_amsgrad False,
        # weight_decay 0, gradient_clipping "none", gradient_accumulation 1. (faceswap 2.x on
        # TensorFlow hard-coded Adam(beta_1=0.5, beta_2=0.99) in plugins/train/model/_base/settings.py;
        # the current PyTorch-backed faceswap made the betas options with the Keras defaults.)
        learning_rate=5e-5,
        adam_eps=1e-7,
        adam_betas=(0.9, 0.999),
        batch_size=16,  # lib/cli/args_train.py --batch-size default 16 (per side)
        warmup_steps=0,  # lib/cli/args_train.py --warmup default 0
        # train_config.py [Loss]: loss_function "ssim" (weight 100 %), loss_function_2 "mse" with
        # loss_weight_2 100, loss_function_3/4 "none"; eye_multiplier 3, mouth_multiplier 2, both
        # applied through penalized_mask_loss True with mask_type "extended" (constants above).
        # faceswap's "ssim" term is DSSIM = (1 - SSIM) / 2 (11x11 gaussian, sigma 1.5, valid
        # windows; lib/model/losses/perceptual_loss.py), so weight 1.0 here means that DSSIM.
        ssim_weight=1.0,
        mse_weight=1.0,
        loss_style="faceswap",
        eye_weight=3.0,
        mouth_weight=2.0,
        mask_loss_weight=0.0,  # learn_mask False: no mask output to train
        coverage=1.0,  # train_config.py coverage default 100.0 (centering "face")
    )

    def __init__(self, *, lowmem: bool = False, icnr_init: bool = False, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"original: unknown arguments {sorted(kwargs)}")
        super().__init__(lowmem=lowmem, icnr_init=icnr_init)
        encoder_dim = 512 if lowmem else 1024
        self.encoder = OriginalEncoder(encoder_dim, lowmem, icnr_init)
        self.decoders = nn.ModuleDict({"a": OriginalDecoder(icnr_init), "b": OriginalDecoder(icnr_init)})
