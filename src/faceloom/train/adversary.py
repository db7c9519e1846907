"""The optional adversarial parts of a training step: the patch GAN on each side's output (``--gan``)
and DeepFaceLab's "true face" discriminator on the shared latent (``--true-face``).

True face: a discriminator learns to tell A's latents (label 1) from B's (label 0), and the encoder
is trained to make B's latents pass as A's. B's decoder then trains on latents like the ones it is
given at swap time (A's faces, A->B), instead of meeting them only in convert. DeepFaceLab's SAEHD
does the same with its source (our B) and destination (our A) codes; its typical power is 0.01.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from faceloom.config import TrainConfig
from faceloom.config.choices import SIDES
from faceloom.train.discriminator import CodeDiscriminator, PatchDiscriminator
from faceloom.train.distributed import mean_grads_over_ranks, same_as_rank0
from faceloom.train.losses import gan_discriminator_loss, gan_generator_loss
from faceloom.train.models.base import FaceSwapModel
from faceloom.train.schedule import Phase

AutocastFn = Callable[[], contextlib.AbstractContextManager[Any]]
Batches = dict[str, dict[str, torch.Tensor]]


POSE_WEIGHT = 0.1
"""Weight of the pose readout's squared error (degrees², the batch's ``pose``: yaw, pitch, roll) with
true face; 0: off. At 0.1 rather than 0.01 the swaps keep the input's head angles better (s4 pair,
40 minutes: A->B pose error 1.79 against 2.00-2.03 degrees)."""
POSE_AXES = 3
"""Yaw, pitch and roll: the readout's outputs, the head angles eval compares."""


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


class Adversary:
    """The discriminators a run asks for, their optimizers and their checkpointed state.

    ``opt_state``: the checkpoint's optimizer state, whose discriminator entries (when present) are
    loaded, so a GAN or true-face run resumes where it stopped. ``autocast`` and ``scaler`` are the
    trainer's, so the discriminators run at the model's precision. Under torchrun (``world`` > 1)
    every rank starts from rank 0's discriminators and averages their gradients, as DDP does for
    the model, so the ranks keep the same ones.
    """

    def __init__(
        self,
        model: FaceSwapModel,
        config: TrainConfig,
        lr: float,
        device: torch.device,
        opt_state: dict[str, Any] | None,
        autocast: AutocastFn,
        scaler: torch.amp.GradScaler,
        world: int = 1,
    ) -> None:
        self.autocast, self.scaler, self.world = autocast, scaler, world
        self.gan_weight = config.gan_weight
        tf = config.true_face
        self.true_face = model.train_defaults.true_face if tf is None else tf
        self.patches: dict[str, torch.nn.Module] = {}
        self.patch_optimizer: torch.optim.Optimizer | None = None
        self.code: torch.nn.Module | None = None
        self.code_optimizer: torch.optim.Optimizer | None = None
        self._codes: torch.Tensor | None = None
        self.pose_weight = POSE_WEIGHT
        self.pose: torch.nn.Linear | None = None
        state = opt_state or {}
        if config.gan:
            self.patches = {s: PatchDiscriminator().to(device) for s in SIDES}
            params = [p for d in self.patches.values() for p in d.parameters()]
            self.patch_optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
            if "discriminators" in state:
                for s in SIDES:
                    self.patches[s].load_state_dict(state["discriminators"][s])
                self.patch_optimizer.load_state_dict(state["d_optimizer"])
        if self.true_face:
            with torch.no_grad():
                code = model.encode(torch.zeros(1, 3, model.resolution, model.resolution, device=device))
            self.code = CodeDiscriminator(code.shape[1], code.shape[-1]).to(device)
            # A linear readout of the head's angles from the latent, shared by both people: B's
            # latents may look like A's, but not at another angle than B's face is at.
            self.pose = torch.nn.Linear(code[0].numel(), POSE_AXES).to(device)
            params = [*self.code.parameters(), *self.pose.parameters()]
            self.code_optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
            if "code_discriminator" in state:
                self.code.load_state_dict(state["code_discriminator"])
                # An older checkpoint's readout of yaw alone is left to relearn, with fresh moments.
                if state["pose_readout"]["weight"].shape == self.pose.weight.shape:
                    self.pose.load_state_dict(state["pose_readout"])
                    self.code_optimizer.load_state_dict(state["code_optimizer"])
            model.encoder.register_forward_hook(self._keep_codes)
        same_as_rank0([*self.patches.values(), *(m for m in (self.code, self.pose) if m is not None)], world)

    def _keep_codes(self, _module: torch.nn.Module, _args: Any, output: torch.Tensor) -> None:
        self._codes = output

    def gan_on(self, phase: Phase) -> bool:
        return bool(self.patches) and phase.gan

    def generator_loss(
        self, batches: Batches, preds: dict[str, torch.Tensor], phase: Phase
    ) -> tuple[torch.Tensor | None, dict[str, float]]:
        """The generator's side of both losses for the step whose forward pass just ran (A's faces
        first, then B's, as the trainer encodes them).

        Args:
            batches: the step's batch of each side; preds: (B, 3, R, R) each side's output.
        Returns:
            The weighted sum (None when neither loss is on) and its float parts for the log.
        """
        autocast, n_a = self.autocast, len(preds["a"])
        total: torch.Tensor | None = None
        parts: dict[str, float] = {}
        if self.gan_on(phase):
            for s in SIDES:
                with autocast():
                    g = gan_generator_loss(self.patches[s](preds[s]))
                parts[f"gan_g_{s}"] = float(g.detach())
                total = self.gan_weight * g if total is None else total + self.gan_weight * g
        if self.code is not None and self._codes is not None:
            with autocast():
                g = _bce(self.code(self._codes[n_a:]), 1.0)
            parts["true_face_g"] = float(g.detach())
            total = self.true_face * g if total is None else total + self.true_face * g
            if self.pose_weight and "pose" in batches["a"]:
                pose = self._pose_loss(self._codes, batches)
                parts["true_face_pose"] = float(pose.detach())
                total = total + self.pose_weight * pose
        return total, parts

    def _pose_loss(self, codes: torch.Tensor, batches: Batches) -> torch.Tensor:
        assert self.pose is not None
        want = torch.cat([batches[s]["pose"] for s in SIDES])
        return F.mse_loss(self.pose(codes.float().flatten(1)), want)

    def discriminator_step(
        self, batches: Batches, preds: dict[str, torch.Tensor], phase: Phase
    ) -> dict[str, float]:
        """One update of each discriminator that is on (after the generator's step); float losses."""
        autocast, scaler, n_a = self.autocast, self.scaler, len(preds["a"])
        parts: dict[str, float] = {}
        if self.gan_on(phase) and self.patch_optimizer is not None:
            self.patch_optimizer.zero_grad(set_to_none=True)
            total: torch.Tensor | None = None
            for s in SIDES:
                with autocast():
                    d = gan_discriminator_loss(
                        self.patches[s](batches[s]["target"]), self.patches[s](preds[s].detach())
                    )
                parts[f"gan_d_{s}"] = float(d.detach())
                total = d if total is None else total + d
            assert total is not None
            scaler.scale(total).backward()
            self._mean_grads(self.patch_optimizer)
            scaler.step(self.patch_optimizer)
        if self.code is not None and self.code_optimizer is not None and self._codes is not None:
            codes = self._codes.detach()
            self.code_optimizer.zero_grad(set_to_none=True)
            with autocast():
                d = 0.5 * (_bce(self.code(codes[:n_a]), 1.0) + _bce(self.code(codes[n_a:]), 0.0))
            parts["true_face_d"] = float(d.detach())
            if self.pose_weight and "pose" in batches["a"]:
                d = d + self._pose_loss(codes, batches)
            scaler.scale(d).backward()
            self._mean_grads(self.code_optimizer)
            scaler.step(self.code_optimizer)
        self._codes = None
        return parts

    def _mean_grads(self, optimizer: torch.optim.Optimizer) -> None:
        mean_grads_over_ranks([p for g in optimizer.param_groups for p in g["params"]], self.world)

    def state_dict(self) -> dict[str, Any]:
        """The discriminators' entries of a checkpoint's optimizer state (empty when none is on)."""
        out: dict[str, Any] = {}
        if self.patch_optimizer is not None:
            out["discriminators"] = {s: d.state_dict() for s, d in self.patches.items()}
            out["d_optimizer"] = self.patch_optimizer.state_dict()
        if self.code is not None and self.code_optimizer is not None:
            out["code_discriminator"] = self.code.state_dict()
            assert self.pose is not None
            out["pose_readout"] = self.pose.state_dict()
            out["code_optimizer"] = self.code_optimizer.state_dict()
        return out
