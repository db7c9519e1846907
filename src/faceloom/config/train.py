"""Settings of `faceloom train` (``[train]`` in faceloom.toml, with the early-stop rule).

``shapes_model`` marks what makes another model (faceswap's ``fixed``): the architecture, its crop
and resolution, the seed, the held-out split and the starting weights. Everything else (stop
rules, cadences, device, augmentation, schedule, learning rate, weight average, GAN) may change on a
trained model: training continues from its last checkpoint with the new value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.choices import CropType, DeviceChoice, ModelName, Precision, TrainSchedule
from faceloom.config.meta import Settings, setting

MODEL_DEFAULT = "the architecture's default"


@dataclass(frozen=True)
class TrainConfig(Settings):
    """How a model is trained. ``None`` means "the architecture's default" (``TrainDefaults``)."""

    SECTION: ClassVar[str] = "train"

    model: ModelName = setting("loom", "Architecture.", shapes_model=True)
    crop: CropType | None = setting(
        None,
        "Crop the model is trained on; dfl_whole_face is DeepFaceLab's, for a .dfm export.",
        shapes_model=True,
        unset=MODEL_DEFAULT,
    )
    resolution: int | None = setting(
        None,
        "Side of the model's faces in px (loom: 128, 192, 256 or 320; lite: 64 or 128).",
        low=64,
        high=512,
        shapes_model=True,
        unset="picked from the faces' detail (loom), else the architecture's",
    )
    iterations: int | None = setting(
        None,
        "Stop at this many steps (faceloom run: in all; faceloom train: more steps).",
        low=1,
        unset="no step limit",
        per_run=True,
    )
    minutes: float | None = setting(
        None,
        "Stop after this many minutes (faceloom run: in all; faceloom train: this run).",
        low=0.0,
        low_open=True,
        unset="no time limit",
        per_run=True,
    )
    batch_size: int | None = setting(None, "Faces per side per step.", low=1, unset=MODEL_DEFAULT)
    learning_rate: float | None = setting(
        None, "Adam's learning rate.", low=0.0, low_open=True, aliases=("--lr",), unset=MODEL_DEFAULT
    )
    warmup_steps: int | None = setting(
        None, "Learning-rate warm-up steps.", low=0, flag="--warmup", unset=MODEL_DEFAULT
    )
    seed: int = setting(
        0, "Seed of the weights, the held-out split and every random draw.", shapes_model=True
    )
    device: DeviceChoice = setting("auto", "auto uses CUDA when present.", affects_output=False)
    precision: Precision = setting("auto", "auto = bf16 on CPUs and GPUs that have it.")
    flip_a: bool = setting(True, "Mirror A's faces at random.")
    flip_b: bool = setting(True, "Mirror B's faces at random.")
    schedule: TrainSchedule = setting(
        "phased",
        "phased splits the budget (--minutes/--iterations): warped training, then the learning rate "
        "decays from half-way, and the last fifth runs without the warp (with the GAN and the detail "
        "losses, when on); constant keeps one learning rate, the warp, the GAN and the losses throughout.",
    )
    warp: bool = setting(
        True, "Random grid warp of the inputs (phased: not in the last fifth); off: no warp at all."
    )
    warp_strength: float | None = setting(
        None,
        "Scale of the grid warp: 1.0 is faceswap's (original 1.0, loom 0.5).",
        low=0.0,
        unset=MODEL_DEFAULT,
    )
    ema_decay: float | None = setting(
        None,
        "Save and swap with an average of the recent weights (about 1/(1-X) steps); 0 = the raw "
        "weights (lite and loom 0.999, original 0 as faceswap).",
        low=0.0,
        high=1.0,
        high_open=True,
        unset=MODEL_DEFAULT,
    )
    perceptual_weight: float | None = setting(
        None,
        "Weight of a perceptual loss on the early features of dlib's face network (edges, "
        "texture); phased: in the last fifth only.",
        low=0.0,
        unset=MODEL_DEFAULT,
    )
    identity_weight: float | None = setting(
        None,
        "Weight of an identity loss: swaps pulled towards the wanted person's dlib face descriptor; "
        "phased: in the last fifth only.",
        low=0.0,
        unset=MODEL_DEFAULT,
    )
    yaw_balance: bool = setting(False, "Sample rare head angles more.")
    gan: bool = setting(
        False, "Add a patch discriminator (adversarial loss); phased: in the last fifth only."
    )
    gan_weight: float = setting(0.1, "Weight of the adversarial loss.", low=0.0)
    true_face: float | None = setting(
        None,
        "DeepFaceLab's true face power: a discriminator on the shared latent makes B's latents "
        "look like A's, the ones B's decoder swaps from (0 = off; loom 0.01, DeepFaceLab's typical).",
        low=0.0,
        high=1.0,
        unset=MODEL_DEFAULT,
    )
    holdout_share: float = setting(
        0.1,
        "Share of each faceset held out for scoring (whole clips or blocks of frames).",
        low=0.0,
        high=0.5,
        high_open=True,
        shapes_model=True,
    )
    save_every: int = setting(
        250, "Save a checkpoint every N steps (0 = at the end only).", low=0, affects_output=False
    )
    snapshot_every: int = setting(0, "Keep a snapshot every N steps (0 = none).", low=0, affects_output=False)
    preview_every: int = setting(250, "Write a preview image every N steps.", low=0, affects_output=False)
    eval_every: int = setting(250, "Score held-out faces every N steps.", low=0)
    log_every: int = setting(10, "Write losses every N steps.", low=1, affects_output=False)
    init_from: str | None = setting(
        None,
        "Start from a trained model of the same architecture (fine-tune a new pair); with a bigger "
        "--resolution the model grows to it (progressive resolution).",
        shapes_model=True,
        ui=False,
        unset="fresh weights",
    )
    threads: int | None = setting(
        None, "CPU threads for torch.", low=1, affects_output=False, unset="all cores"
    )


@dataclass(frozen=True)
class EarlyStopConfig(Settings):
    """When a workspace run stops training early (``[train]`` in faceloom.toml, beside TrainConfig).

    Every ``TrainConfig.eval_every`` steps the trainer scores held-out faces (mean masked SSIM of
    both sides); after ``patience`` such scores in a row without a gain of ``min_delta`` over the
    best so far, training stops. ``patience = 0`` turns the rule off.
    """

    SECTION: ClassVar[str] = "train"

    patience: int = setting(
        4, "Stop after this many held-out scores in a row without a gain of min_delta (0 = off).", low=0
    )
    min_delta: float = setting(0.002, "Smallest gain of the held-out score that counts.", low=0.0)
