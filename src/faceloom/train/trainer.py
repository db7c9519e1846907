"""The training loop: both sides each step, mixed precision, checkpoints, previews, logs, resume.

Every random draw derives from (seed, step, sample), the model from the seed, and the optimizer
state is saved with each checkpoint, so ``--resume`` continues the exact fp32 loss curve.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from faceloom.config import TrainConfig
from faceloom.config.choices import SIDES, Side
from faceloom.config.meta import continue_with
from faceloom.errors import FaceloomError, FormatError, InputError
from faceloom.faces.faceset import Faceset
from faceloom.metrics import ssim_torch
from faceloom.progress import ProgressFn, report
from faceloom.runtime import keep_freed_memory, pin_threads, resolve_device, resolve_precision
from faceloom.train import distributed as ranks
from faceloom.train.adversary import Adversary
from faceloom.train.augment import AugmentConfig
from faceloom.train.data import FaceData
from faceloom.train.ema import WeightAverage
from faceloom.train.face_features import detail_loss
from faceloom.train.facesets import check_facesets, new_model_meta
from faceloom.train.holdout import HoldOut, split_holdout
from faceloom.train.log import TrainLog
from faceloom.train.losses import side_loss
from faceloom.train.modeldir import ModelDir
from faceloom.train.models import FaceSwapModel, create_model, get_model_class, model_from, start_from
from faceloom.train.models.base import TrainDefaults
from faceloom.train.prefetch import Prefetcher, prefetch_plan
from faceloom.train.preview import render_preview, spread_ids
from faceloom.train.resolution import model_side, resolution_warnings
from faceloom.train.schedule import PHASE_NAMES, STOP_RULES, StopRule, budget_progress, phase_at


class TrainError(FaceloomError):
    """Training cannot go on (NaN loss, out of memory); the last good checkpoint is kept."""


@dataclass
class StepReport:
    """What the trainer reports after each step (the ``detail`` of its progress events)."""

    step: int
    end_step: int | None
    elapsed_s: float
    losses: dict[str, float]
    faces_per_s: float
    holdout: dict[str, float] = field(default_factory=dict)
    phase: str = ""


@dataclass
class TrainResult:
    model_dir: Path
    start_step: int
    step: int
    seconds: float
    stopped_by: str
    losses: dict[str, float]
    holdout: dict[str, float]
    warnings: list[str]
    faces_per_s: float


# ---- the trainer ------------------------------------------------------------------------------


class Trainer:
    """Holds one training run. Use :func:`train` unless you need to step it yourself."""

    def __init__(
        self,
        a: str | Path | None,
        b: str | Path | None,
        out: str | Path,
        config: TrainConfig,
        *,
        resume: bool = False,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        schedule_start: float = 0.0,
    ) -> None:
        self.rank, self.world = ranks.dist_info()
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.warnings: list[str] = []
        out = Path(out)
        self.device = ranks.rank_device(torch.device(resolve_device(config.device)), self.world)
        existing: ModelDir | None = None
        if ranks.seen_by_every_rank(ModelDir.exists(out), self.device, self.world):
            if not resume:
                raise InputError(
                    "model dir already exists; add --resume to continue it, or pick a new dir", out
                )
            existing = ModelDir.load(out)
            saved = TrainConfig.from_dict(existing.meta.get("train", {}))
            # What shapes the model stays as it was trained (a change is refused, naming the
            # setting); everything else is this run's: stop rules, cadences, device, warp (a last
            # stretch without it sharpens a trained model), learning rate, weight average, GAN.
            config = continue_with(saved, config)
            existing.meta["train"] = config.to_dict()
            a = a or existing.meta["facesets"]["a"]["path"]
            b = b or existing.meta["facesets"]["b"]["path"]
        else:
            if resume:
                raise InputError("nothing to resume: no model.json here", out)
            if a is None or b is None:
                raise InputError("--a and --b facesets are needed to start training", out)
        self.config = config
        self.schedule_start = schedule_start
        self.phase = phase_at(schedule_start, phased=config.schedule == "phased")
        self.fs: dict[Side, Faceset] = {"a": Faceset.load(a), "b": Faceset.load(b)}
        self.warnings += check_facesets(self.fs["a"], self.fs["b"])
        cls = get_model_class(config.model)
        self.defaults: TrainDefaults = cls.train_defaults
        self.batch_size = config.batch_size or self.defaults.batch_size
        self.lr = config.learning_rate or self.defaults.learning_rate
        self.warmup = config.warmup_steps if config.warmup_steps is not None else self.defaults.warmup_steps
        self.autocast = resolve_precision(config.precision, self.device.type)
        if config.threads:
            torch.set_num_threads(config.threads)
        # OpenCV's own pool off: on a 16-core CUDA machine cv2.remap hung in it (prefetch thread).
        pin_threads()
        keep_freed_memory()

        torch.manual_seed(config.seed)
        init_meta: dict[str, Any] = {}
        averaged: dict[str, torch.Tensor] | None = None
        if existing is not None:
            self.model = model_from(existing)
            raw = existing.load_train_weights()
            saved_weights = existing.load_weights()
            self.model.load_state_dict(saved_weights if raw is None else raw, strict=True)
            averaged = None if raw is None else saved_weights
            self.holdout = {s: HoldOut.from_json(existing.meta["holdout"][s]) for s in SIDES}
        else:
            side, why = model_side(
                cls, config.resolution, self.fs["a"], config.crop or cls.crop, self.device.type
            )
            self.warnings += why
            arch = {"resolution": side} if side != cls.resolutions[0] else {}
            self.model = create_model(config.model, crop=config.crop, **arch)
            if config.init_from:
                init_meta = self._init_from(Path(config.init_from))
            self.holdout = {s: split_holdout(self.fs[s], share=config.holdout_share) for s in SIDES}
        self.model.to(self.device)
        for s, fs in self.fs.items():
            self.warnings += resolution_warnings(s.upper(), fs, self.model.crop, self.model.resolution)
        cap = self.defaults.ema_decay if config.ema_decay is None else config.ema_decay
        self.average = WeightAverage(self.model, cap) if cap > 0 else None
        if self.average is not None and averaged is not None:
            self.average.load_state_dict(averaged)
        self.mdir = existing if existing is not None else self._create_model_dir(out, init_meta)

        self.params = list(self.model.parameters())
        # fused Adam: one kernel over all parameters, ~5x faster than the per-tensor loop on CPU.
        self.optimizer = torch.optim.Adam(
            self.params, lr=self.lr, betas=self.defaults.adam_betas, eps=self.defaults.adam_eps, fused=True
        )
        # fp16 gradients underflow without a loss scale (bf16 and fp32 need none: the scaler is off).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast == torch.float16)
        self.step = self.mdir.step
        opt_state = self.mdir.load_optimizer() if resume else None
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state["optimizer"])
        self.adversary = Adversary(
            self.model, config, self.lr, self.device, opt_state, self._autocast, self.scaler, self.world
        )

        strength = self.defaults.warp_strength if config.warp_strength is None else config.warp_strength
        augment = AugmentConfig(warp=config.warp, warp_strength=strength)
        res, crop = self.model.resolution, self.model.crop
        self.data = {
            s: FaceData(
                self.fs[s],
                self.holdout[s].train_ids,
                crop=crop,
                resolution=res,
                seed=config.seed * 1000 + (1 if s == "a" else 2),
                augment=replace(augment, flip=config.flip_a if s == "a" else config.flip_b),
                eye_weight=self.defaults.eye_weight,
                mouth_weight=self.defaults.mouth_weight,
                coverage=self.defaults.coverage,
                yaw_balance=config.yaw_balance,
            )
            for s in SIDES
        }
        self.eval_data = {
            s: self._plain_data(s, self.holdout[s].holdout_ids or self.holdout[s].train_ids) for s in SIDES
        }
        self.preview_data = {s: self._plain_data(s, spread_ids(self.fs[s], self.holdout[s])) for s in SIDES}
        train_ids = {s: self.holdout[s].train_ids for s in SIDES}
        self.detail = detail_loss(self.model, self.defaults, config, self.device, train_ids, self._plain_data)
        self.ddp_model: torch.nn.Module = self.model
        if self.world > 1:
            self.ddp_model = ranks.wrap_ddp(self.model, self.device)

    # ---- construction helpers -----------------------------------------------------------------
    def _plain_data(self, side: Side, ids: list[str]) -> FaceData:
        """Faces of one side without augmentation (held-out scores, previews)."""
        return FaceData(
            self.fs[side],
            ids,
            crop=self.model.crop,
            resolution=self.model.resolution,
            seed=self.config.seed,
            augment=AugmentConfig.off(),
            coverage=self.defaults.coverage,
        )

    def _init_from(self, path: Path) -> dict[str, Any]:
        """Start from a trained model of the same architecture, grown to ``--resolution`` if given
        (:func:`~faceloom.train.models.factory.start_from`): the cheap way to a pair."""
        src = ModelDir.load(path)
        if src.meta.get("architecture") != self.config.model:
            raise FormatError(
                f"--init-from holds a {src.meta.get('architecture')!r} model; "
                f"this run trains {self.config.model!r}",
                path,
            )
        self.model = start_from(src, self.config.resolution)
        side = src.meta.get("arch", {}).get("resolution", self.model.resolutions[0])
        return {"init_from": {"path": str(path.resolve()), "step": src.step, "resolution": side}}

    def _create_model_dir(self, out: Path, init_meta: dict[str, Any]) -> ModelDir:
        meta = new_model_meta(self.config, self.model, self.defaults, self.fs, self.holdout, init_meta)
        mdir = ModelDir.create(out, meta) if self.rank == 0 else ModelDir(out, meta)
        if self.rank == 0:
            mdir.save_checkpoint(0, self.model.state_dict(), None, {})
        return mdir

    # ---- one step ---------------------------------------------------------------------------------
    def _lr_at(self, step: int) -> float:
        scale = self.phase.lr_scale
        if self.warmup and step < self.warmup:
            return self.lr * scale * (step + 1) / self.warmup
        return self.lr * scale

    def enter_phase(self, progress: float) -> None:
        """Follow the schedule to ``progress`` (share of the budget spent): warp and GAN on or off."""
        self.phase = phase_at(progress, phased=self.config.schedule == "phased")
        for data in self.data.values():
            if data.augment.warp != (self.config.warp and self.phase.warp):
                data.augment = replace(data.augment, warp=not data.augment.warp)

    def _batches(self, step: int) -> dict[str, dict[str, torch.Tensor]]:
        # Under DDP each rank takes its share of the same global batch.
        per_rank = max(1, self.batch_size // self.world)
        lo = self.rank * per_rank
        out: dict[str, dict[str, torch.Tensor]] = {}
        for s in SIDES:
            batch = self.data[s].batch(step, self.batch_size, positions=range(lo, lo + per_rank))
            out[s] = batch.to_torch(self.device)
        return out

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def train_step(self, step: int, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step on a batch of each side; returns the float losses."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(step)
        self.optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        logged: dict[str, float] = {}
        preds: dict[str, torch.Tensor] = {}
        # One encoder pass over both sides' faces, then each half through its own decoder.
        n_a = batches["a"]["warped"].shape[0]
        with self._autocast():
            rgb, masks = self.ddp_model(torch.cat([batches["a"]["warped"], batches["b"]["warped"]]), "ab")
        for s, sl in (("a", slice(0, n_a)), ("b", slice(n_a, None))):
            pred = rgb[sl]
            loss, parts = side_loss(self.defaults, pred, None if masks is None else masks[sl], batches[s])
            preds[s] = pred
            logged[f"loss_{s}"] = float(loss.detach())
            logged.update({f"{k}_{s}": v for k, v in parts.items()})
            total = loss if total is None else total + loss
        assert total is not None
        extra, parts = self.adversary.generator_loss(batches, preds, self.phase)
        if extra is not None:
            total = total + extra
            logged.update(parts)
        if self.detail is not None and self.phase.detail:
            with self._autocast():
                extra, parts = self.detail(self.ddp_model, preds, batches)
            total = total + extra
            logged.update(parts)
        if not math.isfinite(float(total.detach())):
            raise TrainError(
                f"loss became {float(total.detach())} at step {step}; "
                f"kept the checkpoint of step {self.mdir.step}. "
                f"Try a lower --learning-rate (now {self.lr:g}) or --precision fp32"
            )
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        if self.average is not None:
            self.average.update(step)
        logged.update(self.adversary.discriminator_step(batches, preds, self.phase))
        self.scaler.update()
        if self.world > 1:
            logged = ranks.mean_over_ranks(logged, self.world, self.device)
        return logged

    # ---- evaluation, previews, checkpoints --------------------------------------------------------
    @property
    def inference_model(self) -> FaceSwapModel:
        """The weights that are saved, scored and swapped with: the weight average when there is one."""
        if self.average is not None:
            return self.average.module  # type: ignore[return-value]
        return self.model

    @torch.no_grad()
    def evaluate(self, n: int = 32) -> dict[str, float]:
        """Masked SSIM of reconstructions of held-out faces (never trained on), per side."""
        model = self.inference_model
        model.eval()
        out = {}
        for s in SIDES:
            b = self.eval_data[s].fixed(min(n, len(self.eval_data[s]))).to_torch(self.device)
            with self._autocast():
                pred, _ = model(b["target"], s)
            out[f"holdout_ssim_{s}"] = float(ssim_torch(pred.float(), b["target"], mask=b["mask"]))
        return out

    def save(self, snapshot: bool = False) -> None:
        if self.rank != 0:
            return
        opt_state: dict[str, Any] = {"optimizer": self.optimizer.state_dict(), "step": self.step}
        opt_state.update(self.adversary.state_dict())
        raw = None if self.average is None else self.model.state_dict()
        self.mdir.save_checkpoint(
            self.step, self.inference_model.state_dict(), opt_state, {}, snapshot=snapshot, train_state=raw
        )

    def preview(self) -> Path | None:
        if self.rank != 0:
            return None
        model = self.inference_model
        model.eval()
        batches = {s: self.preview_data[s].fixed(len(self.preview_data[s])) for s in SIDES}
        title = f"step {self.step}, {self.phase.name} (warp {'on' if self.data['a'].augment.warp else 'off'})"
        with torch.no_grad(), self._autocast():
            image = render_preview(model, batches["a"], batches["b"], self.device, title)
        from faceloom.media.writer import Credentials, write_image

        path = self.mdir.root / "previews" / f"step_{self.step:08d}.png"
        facts = {
            "architecture": self.config.model,
            "resolution": self.model.resolution,
            "training_steps": self.step,
        }
        for target in (path, self.mdir.root / "previews" / "latest.png"):
            write_image(
                target, image, label_extra={"model_step": self.step}, credentials=Credentials(facts=facts)
            )
        return path

    # ---- the loop -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.config
        start_step = self.step
        end_step = start_step + cfg.iterations if cfg.iterations else None
        if end_step is None and cfg.minutes is None:
            raise InputError("give a stop rule: --iterations N or --minutes M (Ctrl-C also stops and saves)")
        codes = {"phase": PHASE_NAMES}
        log = TrainLog(self.mdir.root, start_step, tensorboard=True, codes=codes) if self.rank == 0 else None
        prefetch = Prefetcher(self._batches, start_step, *prefetch_plan(self.device.type, self.world))
        t0 = time.monotonic()
        last: dict[str, float] = {}
        holdout: dict[str, float] = {}
        stopped_by = "iterations"
        faces_done = 0
        window_t, window_faces = time.monotonic(), 0
        faces_per_s = 0.0
        try:
            while True:
                elapsed = time.monotonic() - t0
                due: dict[StopRule, bool] = {
                    "iterations": end_step is not None and self.step >= end_step,
                    "minutes": elapsed >= (cfg.minutes or math.inf) * 60,
                    "cancelled": self.cancel.is_set(),
                }
                spent = budget_progress(self.step - start_step, cfg.iterations, elapsed, cfg.minutes)
                first_due = next((i for i, r in enumerate(STOP_RULES) if due[r]), -1)
                rule, spent = ranks.rank0_values([first_due, spent], self.world, self.device)
                if rule >= 0:
                    stopped_by = STOP_RULES[int(rule)]
                    break
                self.enter_phase(self.schedule_start + (1.0 - self.schedule_start) * spent)
                batches = prefetch.get(self.step)
                last = self.train_step(self.step, batches)
                self.step += 1
                n_faces = 2 * self.batch_size
                faces_done += n_faces
                window_faces += n_faces
                now = time.monotonic()
                if now - window_t >= 5.0 or (end_step is not None and self.step == end_step):
                    faces_per_s = window_faces / max(now - window_t, 1e-9)
                    window_t, window_faces = now, 0
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    holdout = self.evaluate()
                if log is not None and (self.step % cfg.log_every == 0 or self.step == end_step):
                    row = {
                        "step": self.step,
                        "time_s": round(now - t0, 3),
                        "lr": self._lr_at(self.step - 1),
                        "phase": self.phase.name,
                        **last,
                    }
                    row.update(holdout if self.step % max(cfg.eval_every, 1) == 0 else {})
                    log.write(row)
                if cfg.preview_every and self.step % cfg.preview_every == 0:
                    self.preview()
                snapshot = bool(cfg.snapshot_every) and self.step % cfg.snapshot_every == 0
                if (cfg.save_every and self.step % cfg.save_every == 0) or snapshot:
                    self.save(snapshot=snapshot)
                if self.progress is not None:
                    step = StepReport(
                        self.step, end_step, now - t0, last, faces_per_s, holdout, self.phase.name
                    )
                    losses = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("loss_"))
                    message = f"{losses}, {faces_per_s:.0f} faces/s, {self.phase.name}"
                    report(self.progress, "train", self.step, end_step, message, step)
        except KeyboardInterrupt:
            stopped_by = "interrupted"
        finally:
            prefetch.close()
            if log is not None:
                log.close()
        if self.mdir.step != self.step:
            self.save()
        holdout = self.evaluate()
        if self.rank == 0 and cfg.preview_every:
            self.preview()
        if stopped_by == "interrupted":
            raise KeyboardInterrupt
        elapsed = time.monotonic() - t0
        return TrainResult(
            model_dir=self.mdir.root,
            start_step=start_step,
            step=self.step,
            seconds=elapsed,
            stopped_by=stopped_by,
            losses=last,
            holdout=holdout,
            warnings=self.warnings,
            faces_per_s=faces_done / max(elapsed, 1e-9),
        )


def train(
    a: str | Path | None,
    b: str | Path | None,
    out: str | Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    schedule_start: float = 0.0,
) -> TrainResult:
    """Train (or with ``resume`` continue) a face-swap model on facesets A and B into ``out``.

    ``schedule_start``: the share of the budget earlier runs spent, when ``config``'s iterations and
    minutes are what is left of it (:mod:`faceloom.train.schedule`)."""
    trainer = Trainer(
        a, b, out, config, resume=resume, progress=progress, cancel=cancel, schedule_start=schedule_start
    )
    try:
        return trainer.run()
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise TrainError(
                f"out of memory at batch size {trainer.batch_size}; "
                f"try --batch-size {max(1, trainer.batch_size // 2)}"
            ) from exc
        raise


__all__ = ["StepReport", "TrainError", "TrainResult", "Trainer", "check_facesets", "train"]
