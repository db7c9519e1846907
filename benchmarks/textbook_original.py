"""The ``original`` deepfakes model written the textbook way in plain PyTorch: the speed yardstick.

This machine's 2-core VMs swing in speed by up to 2x for minutes at a time, so an absolute
faces/s figure says little unless something else is measured beside it. The figures we have for
faceswap come with such a partner, taken in one run on this CPU (batch 16 per side): faceswap's
own ``original`` (Keras 3 on torch) 11.4 faces/s fp32 and 16.9 mixed precision, "the same
architecture in plain torch" 15.6 fp32 and 25.0 bf16. This module is that plain-torch partner:
the layers faceswap builds (5x5 stride-2 convs at 128-1024 channels with TensorFlow's "same"
padding, Dense 1024, Dense 4x4x1024, conv + pixel-shuffle upscales, sigmoid output), each side
through the encoder on its own as faceswap's two-input Keras model does, DSSIM from depthwise
11x11 Gaussian convolutions + MSE, ``torch.optim.Adam`` with its default implementation, bf16
autocast. :mod:`benchmarks.train_speed` times it in turns with faceloom's ``original`` and
scales faceswap's figure by the measured ratio.

Shapes: the model maps (B, 3, 64, 64) in [0, 1] to (B, 3, 64, 64) in [0, 1] per side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from faceloom.metrics import SSIM_K1, SSIM_K2, _gauss_kernel_1d

FACESWAP_MIXED_FACES_PER_S = 16.9
"""faceswap ``original``, mixed precision, batch 16 per side, on this CPU."""
TEXTBOOK_BF16_FACES_PER_S = 25.0
"""The same architecture in plain torch with bf16 autocast, measured in the same run as the above."""
FACESWAP_FP32_FACES_PER_S = 11.4
"""faceswap ``original`` in fp32, same run."""
TEXTBOOK_FP32_FACES_PER_S = 15.6
"""The plain-torch build in fp32, same run."""


class _TfSameConv(nn.Conv2d):
    """Conv with TensorFlow's "same" padding (for stride 2 on an even side: 1 before, 2 after)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, n = self.kernel_size[0], self.stride[0], x.shape[-1]
        total = max((-(-n // s) - 1) * s + k - n, 0)
        x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        return super().forward(x)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(_TfSameConv(cin, cout, k, stride), nn.LeakyReLU(0.1))


def _upscale(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(_TfSameConv(cin, cout * 4, 3), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class TextbookOriginal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        chans = [3, 128, 256, 512, 1024]
        self.convs = nn.Sequential(*(_conv(a, b, 5, 2) for a, b in itertools.pairwise(chans)))
        self.dense1 = nn.Linear(1024 * 4 * 4, 1024)
        self.dense2 = nn.Linear(1024, 4 * 4 * 1024)
        self.up = _upscale(1024, 512)
        self.decoders = nn.ModuleDict(
            {
                s: nn.Sequential(
                    _upscale(512, 256), _upscale(256, 128), _upscale(128, 64), _TfSameConv(64, 3, 5)
                )
                for s in "ab"
            }
        )

    def forward(self, x: torch.Tensor, side: str) -> torch.Tensor:
        z = self.dense2(self.dense1(self.convs(x).flatten(1))).view(-1, 1024, 4, 4)
        return torch.sigmoid(self.decoders[side](self.up(z)).float())


def _gaussian_window() -> torch.Tensor:
    """faceloom's 11 px, sigma 1.5 SSIM kernel as a depthwise (3, 1, 11, 11) conv weight."""
    g = torch.as_tensor(_gauss_kernel_1d(), dtype=torch.float32)
    return (g[:, None] * g[None, :]).expand(3, 1, -1, -1).contiguous()


def textbook_dssim(pred: torch.Tensor, target: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 as faceswap's loss: 11x11 Gaussian, valid windows, depthwise convolutions."""
    c1, c2 = SSIM_K1**2, SSIM_K2**2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=3)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    ssim = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return (1.0 - ssim.mean()) / 2.0


def make_textbook_step(batch: int, bf16: bool) -> Callable[[], None]:
    """One training step of the textbook model on random faces: both sides, DSSIM + MSE, Adam."""
    torch.manual_seed(0)
    m = TextbookOriginal().train()
    g = torch.Generator().manual_seed(0)
    xa, xb = torch.rand(batch, 3, 64, 64, generator=g), torch.rand(batch, 3, 64, 64, generator=g)
    window = _gaussian_window()
    opt = torch.optim.Adam(m.parameters(), lr=5e-5, eps=1e-7)

    def step() -> None:
        opt.zero_grad()
        loss = xa.new_zeros(())
        for side, x in (("a", xa), ("b", xb)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = m(x, side)
            loss = loss + textbook_dssim(y, x, window) + F.mse_loss(y, x)
        loss.backward()
        opt.step()

    return step
