"""``loom``: the default model, residual decoders and a learned mask, built for CPU speed; 128, 192,
256 or 320 px (the encoder's dense bottleneck sits at 1/32 of the side, the decoders upscale 16x).

Layout at 128 px (defaults ``width=32``, ``latent=512``)::

    encoder 128x128x3 -> conv 5x5/2: 32 -> 64 -> 128 -> 256 -> 256 (4x4)   LeakyReLU(0.1) after each
                      -> Dense(512) -> Dense(4*4*256) -> upscale to 8x8x256
    decoder 8x8x256 -> up 128 + res -> up 64 + res -> up 32 + res -> up 16 (128x128)
                    -> 3x3 conv to 4 channels, float32 sigmoid: rgb + mask

Why this shape is fast on a CPU:

* the channel count halves each time the side doubles, so every upscale costs about the same
  and no layer works on many channels at a high resolution;
* the residual blocks sit at 16, 32 and 64 px, where they are cheap and where the face's
  structure and detail are decided;
* upsampling is a pixel shuffle (a conv at the low resolution, then a free rearrangement) rather
  than a transposed conv or a conv after resizing, started from ICNR (each sub-pixel's kernel the
  same, so a fresh upscale is a nearest-neighbour one and there is no sub-pixel grid to unlearn;
  ``icnr=False`` starts them from HeUniform as before). benchmarks/quality.py, s4 pair, 10 minutes
  each in turns (about 350 steps): ICNR cut the swaps' grid ratio from 0.73 / 0.55 to 0.43 / 0.50
  and raised swap sharpness from 0.54 / 0.65 to 0.57 / 0.75, held-out SSIM from 0.813 / 0.794 to
  0.836 / 0.827 and the converted video's sharpness from 0.47 to 0.49 (A->B / B->A); at 200 steps
  on GRID g3 / CREMA-D it had cut the grid ratio from 0.48 / 1.82 to 0.38 / 0.73. (An earlier
  run that seemed to show ICNR softer had a learned mask leaking the old eyes into the other arm's
  video; convert no longer lets a learned mask do that.)
* the 4x4 layers use the im2col path of :class:`~faceloom.train.models.original.SameConv2d`
  under bf16;
* the mask shares the decoder trunk and costs one output channel.

Why these defaults (time-to-quality runs, benchmarks/train.py; held-out SSIM on the common 64 px
face crop, A = GRID g3, B = CREMA-D, 2 CPU cores):

* DSSIM over four scales (128, 64, 32, 16 px). With DSSIM at 128 px alone every variant sat on
  the mean face (SSIM 0.32) for 60+ steps, whatever the width, depth, latent size, loss style or
  learning rate; ``original`` at 64 px climbed from the first step. The coarse scales give the
  layout of the face a gradient at once (0.57 vs 0.33 after 60 steps).
* ``width=32`` (13 M parameters, 0.77 GMAC per face forward). Per minute of training it
  beat width 48 and 64 clearly (more steps of nearly the same worth) and width 24 slightly;
  ``width=64`` (44 M) remains available for longer runs on bigger machines.
* Learning rate 4e-4 after a 10-step warm-up: 2e-4 was slower, 6e-4 and 8e-4 no better per step
  at batch 16. At batch 8 on a bf16 CPU, 6e-4 was ahead by 0.003-0.015 SSIM through 5 minutes in
  one run, while 4e-4 alone scored 0.829-0.837 at 5 minutes across runs: not a clear gain.
* The grid warp at half faceswap's strength (``warp_strength=0.5``). One 5-minute run each,
  held-out SSIM, then the swaps' face-embedding distance to the wanted person's mean (A->B, B->A;
  lower is closer; retrieval of the wanted person was 1.0 in every run):

  ============  =====  =====  =====
  warp          SSIM   A->B   B->A
  ============  =====  =====  =====
  faceswap's    0.780  0.427  0.506
  half (used)   0.823  0.370  0.481
  none          0.858  0.379  0.524
  ============  =====  =====  =====

  Half the warp rebuilds faces much closer to no warp at all, while its swaps are at least as
  close to the wanted person as with the full warp. Only these short runs were measured; the
  warp is the method's regulariser for long runs, so it is weakened, not dropped.
* Batch 8 per side, and the saved weights are an average of the trained ones
  (``ema_decay=0.999``, :mod:`faceloom.train.ema`). A face costs the same at batch 8 as at 16, so
  batch 8 takes twice the optimizer steps in the same time, and early in training steps are
  what the model lacks; the weight average takes out the extra noise of the smaller batches later
  on. Four runs taking turns of 10 s, 5 minutes each, on an AVX2-only 2-core CPU (fp32, about
  17 faces/s): held-out SSIM 0.766 at batch 8 (305 steps) against 0.731 at 16 (159 steps); the
  warp turned off, for comparison, gave 0.757. On a bf16 CPU (Zen 4), where batch 16 runs 16%
  more faces/s in the trainer loop, batch 8 still led at every minute: 0.837 against 0.816 after
  5 minutes (707 against 411 steps). On a GPU, where a step of 8 costs about what one
  of 16 does, give ``--batch-size 16`` or more.

Measured and not used: depthwise-separable convs (faster per layer at 16-32 px, but they cut the
decoder's capacity there and save nothing at 128 px where the time goes) and the channels_last
layout (neutral for training). Training runs at 1.7-2.3x ``original``'s faces/s with bf16
(benchmarks/train.py's full trainer loop and benchmarks/train_speed.py, on 2 cores; 2.3x since
the SSIM blur became two matrix products).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from faceloom.train.models.base import FaceSwapModel, TrainDefaults
from faceloom.train.models.layers import ConvBlock, SameConv2d, SigmoidOut, Upscale, dense
from faceloom.train.models.registry import register

__all__ = ["LoomModel", "ResBlock"]


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip: ``lrelu(x + conv(lrelu(conv(x))))``.

    The second conv starts at zero, so a fresh block is the identity (plus the activation) and a
    deep decoder without normalisation trains as stably as a shallow one.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = SameConv2d(ch, ch, 3)
        self.conv2 = SameConv2d(ch, ch, 3)
        nn.init.zeros_(self.conv2.weight)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))  # type: ignore[no-any-return]


class LoomEncoder(nn.Module):
    """Shared encoder. Shapes: (B, 3, R, R) -> (B, 8 * width, R / 16, R / 16)."""

    def __init__(self, width: int, latent: int, resolution: int, icnr: bool) -> None:
        super().__init__()
        deep = 8 * width
        chans = [3, width, 2 * width, 4 * width, deep, deep]
        self.convs = nn.Sequential(*(ConvBlock(a, b, tf_padding=False) for a, b in itertools.pairwise(chans)))
        self.deep = deep
        self.side = resolution // 32
        cells = deep * self.side * self.side
        self.dense1 = dense(cells, latent)
        self.dense2 = dense(latent, cells)
        self.upscale = Upscale(deep, deep, icnr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.dense2(self.dense1(self.convs(x).flatten(1)))
        return self.upscale(z.view(-1, self.deep, self.side, self.side))  # type: ignore[no-any-return]


class LoomDecoder(nn.Sequential):
    """One person's decoder. Shapes: (B, 8 * width, R / 16, R / 16) -> (B, 4, R, R) in [0, 1]."""

    def __init__(self, width: int, res_blocks: int, icnr: bool) -> None:
        layers: list[nn.Module] = []
        ch = 8 * width
        for stage in range(4):
            layers.append(Upscale(ch, ch // 2, icnr))
            ch //= 2
            if stage < res_blocks:
                layers.append(ResBlock(ch))
        layers.append(SigmoidOut(ch, 4, 3))
        super().__init__(*layers)


@register("loom")
class LoomModel(FaceSwapModel):
    """Default high-quality model: ``whole_face`` crop, rgb + learned mask.

    Args:
        width: channels of the first conv; the encoder goes w, 2w, 4w, 8w, 8w and the decoders
            4w, 2w, w, w/2.
        latent: size of the dense bottleneck.
        res_blocks: decoder stages (from 16 px up) followed by a residual block.
        resolution: side in px, one of ``resolutions`` (None: 128).
        icnr: ICNR initialisation of the upscales (an initialisation only: any saved model loads).

    Example:
        >>> m = LoomModel()
        >>> rgb, mask = m(torch.rand(1, 3, 128, 128), "a")
        >>> rgb.shape, mask.shape
        (torch.Size([1, 3, 128, 128]), torch.Size([1, 1, 128, 128]))
    """

    resolutions = (128, 192, 256, 320)
    side_from_faces = True
    resolution = 128
    crop = "whole_face"
    has_mask = True
    train_defaults = TrainDefaults(
        # Residual decoders with zero-initialised branches and the multi-scale loss take a much
        # larger step than faceswap's 5e-5 (see the module docstring for the runs).
        learning_rate=4e-4,
        adam_eps=1e-7,
        adam_betas=(0.9, 0.999),
        batch_size=8,  # per side: twice the steps of 16 for the same faces; see the module docstring
        warmup_steps=10,
        ssim_weight=1.0,
        mse_weight=1.0,
        ssim_scales=4,
        eye_weight=3.0,
        mouth_weight=2.0,
        mask_loss_weight=1.0,  # MSE of the learned mask against the landmark mask, as faceswap
        coverage=1.0,
        warp_strength=0.5,  # half faceswap's grid warp: see the module docstring
        ema_decay=0.999,  # save and swap with a weight average (faceloom.train.ema)
        true_face=0.01,  # swaps into B as sharp as B's rebuilds: see faceloom.train.adversary
    )

    def __init__(
        self,
        *,
        width: int = 32,
        latent: int = 512,
        res_blocks: int = 3,
        resolution: int | None = None,
        icnr: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"loom: unknown arguments {sorted(kwargs)}")
        if width % 2 or not 0 <= res_blocks <= 4:
            raise ValueError(f"loom: width must be even and res_blocks in 0..4, got {width}, {res_blocks}")
        res = self.check_resolution(resolution)
        super().__init__(width=width, latent=latent, res_blocks=res_blocks, resolution=res, icnr=icnr)
        self.resolution = res
        self.encoder = LoomEncoder(width, latent, res, icnr)
        self.decoders = nn.ModuleDict(
            {"a": LoomDecoder(width, res_blocks, icnr), "b": LoomDecoder(width, res_blocks, icnr)}
        )
