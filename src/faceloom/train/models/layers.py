"""Layers the architectures share, built the way faceswap builds them (``lib/model/nn_blocks.py``).

Kernels start HeUniform with zero bias, Dense layers GlorotUniform; ``SameConv2d`` reproduces
Keras/TensorFlow's asymmetric "same" padding. See :mod:`faceloom.train.models.original` for the
faceswap details these follow.
"""

from __future__ import annotations

import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GEMM_MAX_POSITIONS",
    "ConvBlock",
    "SameConv2d",
    "SigmoidOut",
    "Upscale",
    "dense",
    "he_uniform_",
    "icnr_",
]


def he_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """Keras ``HeUniform``: U(-sqrt(6 / fan_in), sqrt(6 / fan_in)), fan_in = k * k * in_ch."""
    return nn.init.kaiming_uniform_(weight, a=0.0, mode="fan_in", nonlinearity="relu")


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR (Aitken et al. 2017) for a conv feeding ``nn.PixelShuffle(scale)``.

    Draws HeUniform kernels for ``out / scale**2`` channels and repeats each one for its
    ``scale**2`` sub-pixels, so the upscaled output starts as a nearest-neighbour upsampling.

    Args:
        weight: (C * scale**2, C_in, k, k) conv weight, filled in place.
    """
    out_ch = weight.shape[0] // (scale * scale)
    base = torch.empty((out_ch, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    bound = math.sqrt(6.0 / fan_in)
    nn.init.uniform_(base, -bound, bound)
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(scale * scale, dim=0))
    return weight


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with "same" padding, TensorFlow's asymmetric kind by default.

    TF pads ``max((ceil(n / s) - 1) * s + k - n, 0)`` in total, the smaller half before, so a
    strided 5x5 conv on an even input pads 1 before and 2 after; ``tf_padding=False`` pads
    ``k // 2`` on both sides (PyTorch's usual choice; no extra copy of the input). Stride 1 with an
    odd kernel is the same either way. Kernels start HeUniform, biases at zero, as in faceswap.

    Speed: when the output has at most :data:`GEMM_MAX_POSITIONS` positions and the conv runs in
    bfloat16 on the CPU (4x4 layers: few pixels, huge weights), it is computed as one im2col
    matrix product, whose backward is about 2x faster there than oneDNN's convolution. Same
    function, same weights.

    Shapes: (B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s)).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, tf_padding: bool = True
    ) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=0)
        self._k = kernel_size
        self._s = stride
        self._tf = tf_padding
        he_uniform_(self.weight)
        assert self.bias is not None
        nn.init.zeros_(self.bias)

    def _pads(self, n: int) -> tuple[int, int]:
        if not self._tf:
            return self._k // 2, self._k // 2
        total = max((-(-n // self._s) - 1) * self._s + self._k - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        out_h = (x.shape[-2] + top + bottom - self._k) // self._s + 1
        out_w = (x.shape[-1] + left + right - self._k) // self._s + 1
        if top != bottom or left != right:
            x = F.pad(x, (left, right, top, bottom))
            top = left = 0
        if out_h * out_w <= GEMM_MAX_POSITIONS and _bf16_on_cpu(x):
            # im2col: (B, C_in * k * k, h * w) -> (B, h * w, C_out) -> (B, C_out, h, w)
            # Folding the batch into one 2-D product keeps torch from expanding the weight per
            # sample (which it does for a non-contiguous 3-D input under inference mode).
            b, positions = x.shape[0], out_h * out_w
            cols = F.unfold(x, self._k, padding=(top, left), stride=self._s)
            cols = cols.transpose(1, 2).reshape(b * positions, -1)
            y = F.linear(cols, self.weight.flatten(1), self.bias)
            return y.view(b, positions, -1).transpose(1, 2).reshape(b, -1, out_h, out_w)
        return F.conv2d(x, self.weight, self.bias, self._s, (top, left))


GEMM_MAX_POSITIONS: Final = 16
"""Convs with at most this many output positions (4x4) use the im2col path under bf16."""


def _bf16_on_cpu(x: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class ConvBlock(nn.Sequential):
    """faceswap ``Conv2DBlock(filters)``: 5x5 stride-2 "same" conv + LeakyReLU(0.1).

    Shapes: (B, C_in, H, W) -> (B, C_out, H / 2, W / 2).
    """

    def __init__(self, in_ch: int, out_ch: int, tf_padding: bool = True) -> None:
        super().__init__(SameConv2d(in_ch, out_ch, 5, stride=2, tf_padding=tf_padding), nn.LeakyReLU(0.1))


class Upscale(nn.Sequential):
    """faceswap ``UpscaleBlock(filters)``: 3x3 conv to ``4 * filters``, LeakyReLU(0.1), pixel shuffle.

    Shapes: (B, C_in, H, W) -> (B, C_out, 2H, 2W).
    """

    def __init__(self, in_ch: int, out_ch: int, icnr: bool = False) -> None:
        conv = SameConv2d(in_ch, out_ch * 4, 3)
        if icnr:
            icnr_(conv.weight)
        super().__init__(conv, nn.LeakyReLU(0.1), nn.PixelShuffle(2))


def dense(in_f: int, out_f: int) -> nn.Linear:
    """Keras ``Dense``: GlorotUniform kernel, zero bias."""
    layer = nn.Linear(in_f, out_f)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SigmoidOut(nn.Module):
    """faceswap ``Conv2DOutput``: 5x5 "same" conv then a float32 sigmoid.

    Shapes: (B, C_in, H, W) -> (B, C_out, H, W) float32 in [0, 1].
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = SameConv2d(in_ch, out_ch, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x).float())
