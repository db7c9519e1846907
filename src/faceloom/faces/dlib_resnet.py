"""dlib's face-recognition ResNet (the 128-d descriptor of ``face-recognition-models``) as a torch
module, read straight from dlib's own file: for identity and perceptual losses, batched and
differentiable, on any device.

The format (``../shared/notes/dlib-resnet-format.md``, from dlib's ``serialize.h`` and
``dnn/core.h``): integers are a control byte (low nibble = bytes that follow, 0x80 = negative) and
a little-endian magnitude; floats are an integer mantissa and exponent; strings a length and bytes;
bools one ASCII ``'1'``/``'0'``. The loss layer and the wrappers' versions come first, then every
layer's details in forward order, each followed by three bools and three (empty) buffers. The
residual wiring is not stored: it is dlib's ``dnn_face_recognition_ex.cpp`` network, whose blocks
are ``conv, affine, relu, conv, affine, [avg_pool 2x2 of the block input,] add, relu``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceloom.checks import check_shape
from faceloom.errors import FormatError

CHIP_SIZE = 150
CHIP_PADDING = 0.25
"""dlib's chip: ``get_face_chip_details(shape, 150, 0.25)``."""
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@dataclass
class _Layer:
    kind: str
    params: np.ndarray | None = None
    ints: list[int] = field(default_factory=list)


class _Reader:
    """dlib's serialisation primitives over the bytes of one file."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> FormatError:
        return FormatError(f"not dlib's face-recognition network ({what} at byte {self.pos})", self.path)

    def int_(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("file ends early")
        control = self.data[self.pos]
        n = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if control & 0x80 else value

    def float_(self) -> float:
        mantissa, exponent = self.int_(), self.int_()
        return float(mantissa) * 2.0**exponent

    def str_(self) -> str:
        n = self.int_()
        text = self.data[self.pos : self.pos + n]
        self.pos += n
        return text.decode("latin-1")

    def bool_(self) -> bool:
        c = self.data[self.pos : self.pos + 1]
        if c not in (b"0", b"1"):
            raise self.fail("a bool expected")
        self.pos += 1
        return c == b"1"

    def tensor_(self) -> np.ndarray:
        if self.int_() != 2:
            raise self.fail("a tensor expected")
        n = int(np.prod([self.int_() for _ in range(4)]))
        out = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.pos).copy()
        self.pos += 4 * n
        return out

    def alias_(self) -> list[int]:
        if self.int_() != 1:
            raise self.fail("an alias tensor expected")
        return [self.int_() for _ in range(4)]


def _read_layer(r: _Reader, kind: str) -> _Layer:
    if kind == "con_4":
        params = r.tensor_()
        ints = [r.int_() for _ in range(7)]  # filters, rows, cols, stride y/x, padding y/x
        shape = r.alias_()
        r.alias_()
        [r.float_() for _ in range(4)]
        return _Layer(kind, params, ints + shape[1:2])
    if kind == "affine_":
        params = r.tensor_()
        r.alias_()
        r.alias_()
        r.int_()
        return _Layer(kind, params)
    if kind in ("max_pool_2", "avg_pool_2"):
        return _Layer(kind, None, [r.int_() for _ in range(6)])
    if kind == "fc_2":
        outputs, inputs = r.int_(), r.int_()
        params = r.tensor_()
        r.alias_()
        r.alias_()
        r.int_()
        [r.float_() for _ in range(4)]
        return _Layer(kind, params, [outputs, inputs])
    if kind in ("relu_", "add_prev_"):
        return _Layer(kind)
    raise r.fail(f"unknown layer {kind!r}")


def read_layers(path: str | Path) -> tuple[tuple[float, float, float], list[_Layer]]:
    """The input's channel means and the layers, in forward order, of a dlib network file."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    try:
        return _read_all(r)
    except (ValueError, IndexError) as exc:  # counts past the end, nonsense sizes
        raise r.fail(f"damaged: {exc}") from None


def _read_all(r: _Reader) -> tuple[tuple[float, float, float], list[_Layer]]:
    if r.int_() != 1 or r.str_() != "loss_metric_2":
        raise r.fail("no loss_metric_2 first")
    r.float_(), r.float_()
    while not (r.data[r.pos] == 0x01 and r.data[r.pos + 1] == len("input_rgb_image_sized")):
        r.int_()  # the wrappers' versions, output to input
    if r.str_() != "input_rgb_image_sized":
        raise r.fail("no input_rgb_image_sized")
    means = (r.float_(), r.float_(), r.float_())
    if (r.int_(), r.int_()) != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail(f"input not {CHIP_SIZE} px")
    layers = []
    while r.pos < len(r.data):
        layers.append(_read_layer(r, r.str_()))
        [r.bool_() for _ in range(3)]
        [r.tensor_() for _ in range(3)]
        if len(layers) == 1:
            r.int_()  # the input layer's sample expansion factor
    return means, layers


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the larger size in each dimension, the smaller input zero-padded at the end."""
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class _Conv(nn.Conv2d):
    def __init__(self, layer: _Layer) -> None:
        filters, k, _, stride, _, pad, _, in_ch = layer.ints
        super().__init__(in_ch, filters, k, stride=stride, padding=pad)
        assert layer.params is not None
        n = self.weight.numel()
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(layer.params[:n]).view_as(self.weight))
            self.bias.copy_(torch.from_numpy(layer.params[n:]))  # type: ignore[union-attr]


class _Affine(nn.Module):
    gamma: torch.Tensor
    beta: torch.Tensor

    def __init__(self, layer: _Layer) -> None:
        super().__init__()
        assert layer.params is not None
        gamma, beta = np.split(layer.params, 2)
        self.register_buffer("gamma", torch.from_numpy(gamma).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


class _Block(nn.Module):
    """``relu(conv-affine-relu-conv-affine(x) + shortcut(x))``; a down block's shortcut is a 2x2
    average pool of its input, an identity block's the input itself."""

    def __init__(self, layers: list[_Layer]) -> None:
        super().__init__()
        self.conv1, self.aff1 = _Conv(layers[0]), _Affine(layers[1])
        self.conv2, self.aff2 = _Conv(layers[3]), _Affine(layers[4])
        self.down = layers[5].kind == "avg_pool_2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        short = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, short))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet (29 convs in 14 residual blocks, 5.6 M parameters), frozen.

    ``forward``: (B, 3, 150, 150) RGB chips in 0..255 -> (B, 128) descriptors, as dlib's
    ``compute_face_descriptor`` on the same chip (same person below a distance of 0.6).
    ``features``: the activations after the stem and after each of the five levels, for a
    perceptual loss (early ones hold texture and edges, late ones identity).
    """

    mean: torch.Tensor
    fc: torch.Tensor

    LEVEL_BLOCKS = (3, 4, 3, 3, 1)
    """Blocks per level, input to output (32, 64, 128, 256, 256 channels)."""

    def __init__(self, means: tuple[float, float, float], layers: list[_Layer]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1))
        kinds = [layer.kind for layer in layers]
        if kinds[:4] != ["con_4", "affine_", "relu_", "max_pool_2"] or kinds[-2:] != ["avg_pool_2", "fc_2"]:
            raise ValueError(f"unexpected layer order {kinds[:4]} ... {kinds[-2:]}")
        self.stem_conv, self.stem_affine = _Conv(layers[0]), _Affine(layers[1])
        blocks: list[_Block] = []
        i = 4
        while i < len(layers) - 2:
            size = 8 if layers[i + 5].kind == "avg_pool_2" else 7
            blocks.append(_Block(layers[i : i + size]))
            i += size
        self.blocks = nn.ModuleList(blocks)
        fc = layers[-1]
        assert fc.params is not None
        self.register_buffer("fc", torch.from_numpy(fc.params.reshape(fc.ints[1], fc.ints[0])))
        self.requires_grad_(False)
        self.eval()

    def features(self, chips: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
        """Activations after the stem and after the first ``levels`` levels. chips: (B, 3, 150, 150)."""
        check_shape(chips, "B 3 S S", "dlib chips", S=CHIP_SIZE)
        x = (chips - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        out = [x]
        ends = np.cumsum(self.LEVEL_BLOCKS)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i + 1 in ends:
                out.append(x)
                if len(out) > levels:
                    break
        return out

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.features(chips)[-1]
        return x.mean(dim=(2, 3)) @ self.fc


@lru_cache(maxsize=1)
def _cached(path: str) -> tuple[tuple[float, float, float], list[_Layer]]:
    return read_layers(path)


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """The network of ``face-recognition-models`` (or of ``path``), read once per process."""
    if path is None:
        from faceloom.faces.detect_dlib import dlib_model_path

        path = dlib_model_path(MODEL_FILE)
    means, layers = _cached(str(path))
    return DlibResNet(means, layers)


def chip_matrix(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) image -> 150 px chip matrix of dlib's ``get_face_chip_details(shape, 150, 0.25)`` for
    (68, 2) landmarks (dlib fits its own mean face to them)."""
    import dlib

    from faceloom.faces.detect_dlib import dlib_shape

    details: Any = dlib.get_face_chip_details(dlib_shape(landmarks), CHIP_SIZE, CHIP_PADDING)
    r = details.rect
    angle = float(details.angle)
    scale = (r.right() - r.left()) / (CHIP_SIZE - 1.0)  # image px per chip px
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    half = (CHIP_SIZE - 1) / 2.0
    to_image = np.array(
        [[c, -s, cx - c * half + s * half], [s, c, cy - s * half - c * half], [0.0, 0.0, 1.0]]
    )
    return np.asarray(np.linalg.inv(to_image)[:2], dtype=np.float64)
