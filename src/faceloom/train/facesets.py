"""The facesets a model trains on: what is refused, what is warned about, what model.json records."""

from __future__ import annotations

from typing import Any

from faceloom.config import TrainConfig
from faceloom.config.choices import SIDES, Side
from faceloom.errors import InputError
from faceloom.faces.faceset import Faceset
from faceloom.faces.identity import faceset_mean_embedding
from faceloom.train.holdout import HoldOut
from faceloom.train.models.base import FaceSwapModel, TrainDefaults

MIN_FACES = 8
RECOMMENDED_FACES = 300


def check_facesets(fs_a: Faceset, fs_b: Faceset) -> list[str]:
    """Refuse facesets that cannot train together; return warnings for ones that are weak."""
    if fs_a.crop != fs_b.crop or fs_a.size != fs_b.size:
        raise InputError(
            f"facesets differ: A is {fs_a.crop} {fs_a.size}px, B is {fs_b.crop} {fs_b.size}px; "
            "extract both with the same --size",
            fs_b.root,
        )
    warnings = []
    for name, fs in (("A", fs_a), ("B", fs_b)):
        n = len(fs.records)
        if n < MIN_FACES:
            raise InputError(
                f"faceset {name} has only {n} faces; training needs at least {MIN_FACES}", fs.root
            )
        if n < RECOMMENDED_FACES:
            warnings.append(
                f"faceset {name} ({fs.root}) has {n} faces; swaps usually need {RECOMMENDED_FACES}+ "
                "covering the poses and expressions of the target"
            )
    return warnings


def new_model_meta(
    config: TrainConfig,
    model: FaceSwapModel,
    defaults: TrainDefaults,
    fs: dict[Side, Faceset],
    holdout: dict[Side, HoldOut],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """model.json of a new model: what it is, how it trains, its facesets, held-out split and each
    person's mean face embedding (convert tells people apart with it)."""
    fs_meta = {
        s: {
            "path": str(fs[s].root.resolve()),
            "fingerprint": fs[s].ids_fingerprint(),
            "faces": len(fs[s].records),
        }
        for s in SIDES
    }
    return {
        "architecture": config.model,
        "arch": model.arch_config(),
        "resolution": model.resolution,
        "crop": model.crop,
        "has_mask": model.has_mask,
        "train": config.to_dict(),
        "train_defaults": {k: getattr(defaults, k) for k in defaults.__dataclass_fields__},
        "facesets": fs_meta,
        "holdout": {s: holdout[s].to_json() for s in SIDES},
        "embeddings": {s: faceset_mean_embedding(fs[s], holdout[s].train_ids) for s in SIDES},
        "stored_crop": {"type": fs["a"].crop, "size": fs["a"].size},
        **extra,
    }
