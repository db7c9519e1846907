"""The model dir: model.json, checkpoints (weights in safetensors + optimizer state), previews, logs.

Layout::

    model.json                     what the model is and which checkpoint is current
    checkpoints/step_00001000/     weights.safetensors, optimizer.pt (the rolling checkpoint), and
                                   train_weights.safetensors when the saved weights are a weight
                                   average (the raw trained weights, for an exact --resume)
    snapshots/step_00005000/       weights.safetensors (kept apart, never rolled over)
    previews/                      step_00001000.png and latest.png
    log.csv, tensorboard/          losses over time

A checkpoint is written into a temporary folder and renamed into place before model.json is
atomically rewritten to point at it, so a kill at any moment leaves model.json naming a complete
checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceloom import __version__
from faceloom.config.meta import fingerprint
from faceloom.errors import FormatError, InputError, output_error_from_os
from faceloom.fsutil import atomic_write_bytes, atomic_write_text, content_fingerprint, ensure_dir

if TYPE_CHECKING:
    import torch

MODEL_FORMAT = "faceloom-model"
MODEL_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
TRAIN_WEIGHTS_FILE = "train_weights.safetensors"


@dataclass
class ModelDir:
    root: Path
    meta: dict[str, Any]

    @classmethod
    def exists(cls, root: str | Path) -> bool:
        return (Path(root) / MODEL_FILE).exists()

    @classmethod
    def create(cls, root: str | Path, meta: dict[str, Any]) -> ModelDir:
        root = ensure_dir(root)
        for sub in ("checkpoints", "snapshots", "previews"):
            ensure_dir(root / sub)
        full = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "faceloom_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "step": 0,
            "checkpoint": None,
            **meta,
        }
        return cls(root, full)

    @classmethod
    def load(cls, root: str | Path) -> ModelDir:
        root = Path(root)
        path = root / MODEL_FILE
        if not path.exists():
            raise InputError(f"not a model dir (no {MODEL_FILE})", root)
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FormatError(f"damaged {MODEL_FILE} ({exc})", path) from exc
        if meta.get("format") != MODEL_FORMAT:
            raise FormatError("not a faceloom model dir", root)
        if meta.get("version") != MODEL_VERSION:
            raise FormatError(
                f"model dir format version {meta.get('version')} is not supported by faceloom {__version__} "
                f"(reads version {MODEL_VERSION}); use the faceloom that wrote it",
                root,
            )
        return cls(root, meta)

    @staticmethod
    def checkpoint_fingerprint(root: str | Path) -> str:
        """Identity of a model dir's current checkpoint, without loading it; "" when there is none."""
        try:
            meta = json.loads((Path(root) / MODEL_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return ""
        ckpt = meta.get("checkpoint")
        weights = Path(root) / ckpt / WEIGHTS_FILE if ckpt else None
        content = content_fingerprint(weights) if weights is not None and weights.is_file() else ""
        return fingerprint([meta.get("created"), meta.get("step"), ckpt, content])

    # ---- checkpoint files -----------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def checkpoint_dir(self) -> Path | None:
        ckpt = self.meta.get("checkpoint")
        return self.root / ckpt if ckpt else None

    def weights_path(self) -> Path:
        ckpt = self.checkpoint_dir
        if ckpt is None or not (ckpt / WEIGHTS_FILE).exists():
            raise FormatError("model dir has no saved checkpoint yet", self.root)
        return ckpt / WEIGHTS_FILE

    def save_meta(self) -> None:
        self.meta["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.root / MODEL_FILE, json.dumps(self.meta, indent=1))

    def save_checkpoint(
        self,
        step: int,
        model_state: dict[str, torch.Tensor],
        optimizer_state: dict[str, Any] | None,
        meta_updates: dict[str, Any],
        snapshot: bool = False,
        train_state: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write weights (+ optimizer) for ``step`` and make it the current checkpoint.

        ``model_state`` is what inference loads; ``train_state``, when the two differ (a weight
        average is saved), the raw trained weights that ``--resume`` continues from.
        """
        from safetensors.torch import save as save_safetensors

        name = f"step_{step:08d}"
        final = self.root / "checkpoints" / name
        tmp = self.root / "checkpoints" / f".{name}.tmp"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for file, state in ((WEIGHTS_FILE, model_state), (TRAIN_WEIGHTS_FILE, train_state)):
                if state is not None:
                    weights = {k: v.detach().cpu().contiguous() for k, v in state.items()}
                    atomic_write_bytes(tmp / file, save_safetensors(weights))
            if optimizer_state is not None:
                import io

                import torch

                buf = io.BytesIO()
                torch.save(optimizer_state, buf)
                atomic_write_bytes(tmp / OPTIMIZER_FILE, buf.getvalue())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise output_error_from_os(exc, final) from exc
        previous = self.checkpoint_dir
        self.meta.update(meta_updates)
        self.meta["step"] = step
        self.meta["checkpoint"] = f"checkpoints/{name}"
        self.save_meta()
        if previous is not None and previous != final:
            shutil.rmtree(previous, ignore_errors=True)
        if snapshot:
            snap = self.root / "snapshots" / name
            with contextlib.suppress(FileExistsError):
                snap.mkdir(parents=True)
            shutil.copy2(final / WEIGHTS_FILE, snap / WEIGHTS_FILE)
            atomic_write_text(snap / MODEL_FILE, json.dumps(self.meta, indent=1))
        return final

    def load_weights(self, path: Path | None = None) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        path = path or self.weights_path()
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise FormatError(f"damaged weights file ({exc})", path) from exc

    def load_train_weights(self) -> dict[str, torch.Tensor] | None:
        """The raw trained weights of the current checkpoint, or None where they equal the saved ones."""
        ckpt = self.checkpoint_dir
        if ckpt is None or not (ckpt / TRAIN_WEIGHTS_FILE).exists():
            return None
        return self.load_weights(ckpt / TRAIN_WEIGHTS_FILE)

    def load_optimizer(self) -> dict[str, Any] | None:
        ckpt = self.checkpoint_dir
        if ckpt is None or not (ckpt / OPTIMIZER_FILE).exists():
            return None
        import torch

        state: dict[str, Any] = torch.load(ckpt / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        return state
