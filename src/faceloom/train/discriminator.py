"""The discriminators of the optional adversarial losses; not registered models.

:class:`PatchDiscriminator` judges each side's output (``--gan``).

A PatchGAN (Isola et al. 2017, pix2pix): a few strided 4x4 convs whose output is a grid of logits,
one per overlapping receptive field (70 px for ``layers=3``), so the adversarial loss judges local
texture, which is what an autoencoder's L2/SSIM losses blur, and leaves the global layout to the
reconstruction loss. Spectral normalisation takes the place of batch norm: no batch statistics (the
two people would share them) and a well-conditioned least-squares GAN from the first step.

:class:`CodeDiscriminator` judges the shared encoder's output (``--true-face``, DeepFaceLab's "true
face power"): which person's face a latent came from.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["CodeDiscriminator", "PatchDiscriminator"]


def _conv(in_ch: int, out_ch: int, stride: int, spectral: bool) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, 4, stride=stride, padding=1)
    nn.init.normal_(conv.weight, 0.0, 0.02)
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)
    return spectral_norm(conv) if spectral else conv


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator returning raw logits (no sigmoid; the loss decides).

    Layout for ``layers=3``: 4x4 convs with stride 2, 2, 2, 1 and ``base``, 2, 4, 8 x ``base``
    channels (capped at 8 x ``base``), LeakyReLU(0.2), then a stride-1 4x4 conv to one channel.

    Args:
        in_ch: input channels (3 for rgb).
        base: channels of the first conv.
        layers: number of stride-2 convs; each one halves the logit grid.
        spectral: spectral-normalise every conv.

    Shapes:
        (B, in_ch, H, W) -> (B, 1, H / 2**layers - 2, W / 2**layers - 2); 128 px in -> 14x14 logits,
        64 px -> 6x6.

    Example:
        >>> d = PatchDiscriminator()
        >>> d(torch.rand(2, 3, 128, 128)).shape
        torch.Size([2, 1, 14, 14])
    """

    def __init__(self, in_ch: int = 3, base: int = 64, layers: int = 3, spectral: bool = True) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"PatchDiscriminator needs at least one layer, got {layers}")
        mods: list[nn.Module] = [_conv(in_ch, base, 2, spectral), nn.LeakyReLU(0.2)]
        ch = base
        for i in range(1, layers + 1):
            out = base * min(2**i, 8)
            mods += [_conv(ch, out, 2 if i < layers else 1, spectral), nn.LeakyReLU(0.2)]
            ch = out
        mods.append(_conv(ch, 1, 1, spectral))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, in_ch, H, W), images in [0, 1]. Returns (B, 1, h, w) float32 logits."""
        return self.net(x * 2.0 - 1.0).float()  # type: ignore[no-any-return]


class CodeDiscriminator(nn.Module):
    """DeepFaceLab's code discriminator: strided convs over the latent grid, LeakyReLU(0.1), then a
    1x1 conv to logits (no sigmoid; the loss decides).

    Layout: ``1 + side // 8`` convs with stride 2 (4x4 first, then 3x3), ``base`` x 1, 2, 4, 8
    channels (capped at 8 x ``base``).

    Args:
        in_ch: channels of the latent; side: its side in cells.

    Shapes:
        (B, in_ch, side, side) -> (B, 1, s, s), each conv halving the grid (rounded up): the 8-cell
        latent of a 128 px ``loom`` gives 2x2 logits, 12 cells (192 px) 3x3.

    Example:
        >>> CodeDiscriminator(256, 8)(torch.rand(2, 256, 8, 8)).shape
        torch.Size([2, 1, 2, 2])
    """

    def __init__(self, in_ch: int, side: int, base: int = 256) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        ch = in_ch
        for i in range(1 + side // 8):
            out = base * min(2**i, 8)
            mods += [nn.Conv2d(ch, out, 4 if i == 0 else 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            ch = out
        mods.append(nn.Conv2d(ch, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Args: z (B, in_ch, side, side). Returns (B, 1, s, s) float32 logits."""
        return self.net(z).float()  # type: ignore[no-any-return]
