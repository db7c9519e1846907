"""An exponential moving average of a model's weights: the weights faceloom saves and swaps with.

Adam's last step leaves the weights wherever the last few batches pushed them; the average over
the recent steps sits nearer the centre of that wandering and rebuilds unseen faces better (the
same reason StyleGAN, diffusion models and timm's ``ModelEmaV3`` keep one). The trainer updates
the raw weights as before and, after each optimizer step, pulls the average towards them:

    avg <- decay(step) * avg + (1 - decay(step)) * raw,   decay(step) = min(cap, (1 + step) / (10 + step))

The step-dependent decay (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) makes
the average follow closely while training moves fast (0.5 at step 8, 0.9 at step 80) and smooth
over about ``1 / (1 - cap)`` steps late in a run, so it never lags a young model by much.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["WeightAverage", "ema_decay"]


def ema_decay(step: int, cap: float) -> float:
    """Decay of the average at optimizer step ``step`` (0-based): ``min(cap, (1 + step) / (10 + step))``."""
    return min(cap, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """A shadow copy of ``model`` whose parameters follow the trained ones as an EMA.

    Args:
        model: the network being trained (it stays bound: :meth:`update` reads its parameters);
            the average starts as a copy of its current weights.
        cap: the largest decay, in ``[0, 1)``; about ``1 / (1 - cap)`` steps are averaged late in a run.

    The shadow is a full module (:attr:`module`) in eval mode that never takes gradients, so it can
    be scored, previewed and saved like the trained model. Buffers (none in faceloom's models) are
    copied, not averaged.

    Example:
        >>> avg = WeightAverage(model, cap=0.999)
        >>> loss.backward(); optimizer.step(); avg.update(step)
        >>> avg.module(x, "b")  # swap with the averaged weights
    """

    def __init__(self, model: nn.Module, cap: float) -> None:
        if not 0.0 <= cap < 1.0:
            raise ValueError(f"weight average decay must be in [0, 1), got {cap}")
        self.cap = cap
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self._params: list[torch.Tensor] = list(self.module.parameters())
        self._source: list[torch.Tensor] = list(model.parameters())
        self._buffer_pairs = list(zip(self.module.buffers(), model.buffers(), strict=True))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Pull the average towards the trained weights after optimizer step ``step``."""
        torch._foreach_lerp_(self._params, self._source, 1.0 - ema_decay(step, self.cap))
        for mine, theirs in self._buffer_pairs:
            mine.copy_(theirs)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)
