"""The true-face discriminator (``--true-face``, on in loom by default): it learns to tell the two
people's latents apart, its generator term trains only the encoder, and its state travels with the
checkpoint."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from faceloom.config import TrainConfig
from faceloom.train.adversary import Adversary
from faceloom.train.modeldir import ModelDir
from faceloom.train.trainer import Trainer, train
from tests.conftest import lite_config as lite


def _rows(model_dir: Path) -> list[dict[str, str]]:
    with (model_dir / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_code_discriminator_tells_the_people_apart_and_trains_only_the_encoder(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    trainer = Trainer(pair[0], pair[1], tmp_path / "m", lite(true_face=0.5, batch_size=8))
    adversary, model = trainer.adversary, trainer.model
    batches = trainer._batches(0)
    faces = torch.cat([batches["a"]["target"], batches["b"]["target"]])
    n_a = batches["a"]["target"].shape[0]
    losses = []
    for _ in range(40):  # the model stays as built: only the discriminator learns
        rgb, _ = model(faces, "ab")
        preds = {"a": rgb[:n_a], "b": rgb[n_a:]}
        parts = adversary.discriminator_step(batches, preds, trainer.phase)
        losses.append(parts["true_face_d"])
    assert losses[0] > 0.5 and losses[-1] < 0.5 * losses[0], losses  # the latents hold who it is

    model.zero_grad(set_to_none=True)
    rgb, _ = model(faces, "ab")
    total, parts = adversary.generator_loss(batches, {"a": rgb[:n_a], "b": rgb[n_a:]}, trainer.phase)
    assert total is not None and parts["true_face_g"] > math.log(2)  # B's latents are caught as B's
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoders.parameters())


def test_true_face_is_logged_and_resumes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "tf"
    train(
        pair[0], pair[1], out, lite(iterations=6, batch_size=4, true_face=0.1, log_every=1, preview_every=0)
    )
    rows = _rows(out)
    assert len(rows) == 6
    assert all(
        math.isfinite(float(r["true_face_g"])) and math.isfinite(float(r["true_face_d"])) for r in rows
    )
    saved = ModelDir.load(out).load_optimizer()
    assert saved is not None
    weights = saved["code_discriminator"]

    resumed = Trainer(None, None, out, lite(iterations=2, batch_size=4, true_face=0.1), resume=True)
    assert resumed.adversary.code is not None
    now = resumed.adversary.code.state_dict()
    assert all(torch.equal(now[k], v) for k, v in weights.items())
    # a checkpoint from before the readout had three angles (yaw only): the readout relearns them
    r = resumed
    assert r.adversary.pose is not None
    yaw_only = {"weight": torch.zeros(1, r.adversary.pose.in_features), "bias": torch.zeros(1)}
    old = {**saved, "pose_readout": yaw_only}
    again = Adversary(r.model, r.config, r.lr, r.device, old, r._autocast, r.scaler)
    assert again.code is not None and again.pose is not None and again.pose.out_features == 3
    assert all(torch.equal(again.code.state_dict()[k], v) for k, v in weights.items())
    assert resumed.run().step == 8
    # turned off on resume: no discriminator, and the rows say so
    train(None, None, out, lite(iterations=1, batch_size=4, log_every=1, preview_every=0), resume=True)
    assert _rows(out)[-1]["true_face_g"] == ""


def test_true_face_is_on_in_loom_by_default_and_off_when_asked(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    loom = Trainer(pair[0], pair[1], tmp_path / "loom", TrainConfig(model="loom", resolution=128))
    assert loom.adversary.true_face > 0 and loom.adversary.code is not None
    parts = loom.train_step(0, loom._batches(0))
    assert math.isfinite(parts["true_face_g"]) and math.isfinite(parts["true_face_pose"])
    asked_off = TrainConfig(model="loom", resolution=128, true_face=0.0)
    assert Trainer(pair[0], pair[1], tmp_path / "off", asked_off).adversary.code is None
    assert Trainer(pair[0], pair[1], tmp_path / "lite", lite()).adversary.code is None


def test_the_batch_pose_follows_the_extractors_and_trains_the_readout(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    trainer = Trainer(pair[0], pair[1], tmp_path / "m", lite(true_face=0.5))
    poses, stored = [], []
    for s in ("a", "b"):
        data = trainer.eval_data[s]
        batch = data.fixed(len(data))
        poses.append(batch.to_torch()["pose"].numpy())
        by_id = {r.id: (r.yaw, r.pitch, r.roll) for r in trainer.fs[s].records}
        stored.append(np.array([by_id[i] for i in batch.ids]))
    pose, extractor = np.concatenate(poses), np.concatenate(stored)
    assert pose.shape == (len(extractor), 3)
    assert np.corrcoef(pose[:, 0], extractor[:, 0])[0, 1] > 0.8  # yaw, in the crop and in the frame
    assert np.median(np.abs(pose[:, 0] - extractor[:, 0])) < 3.0  # degrees
    # pitch in the crop differs from the frame's by perspective (about 4 degrees) but follows it
    assert np.corrcoef(pose[:, 1], extractor[:, 1])[0, 1] > 0.3

    augmented = trainer.data["a"].batch(0, 16).to_torch()  # about half flipped: yaw follows the nose
    lm = augmented["landmarks"].numpy()
    nose_offset = lm[:, 30, 0] - 0.5 * (lm[:, 0, 0] + lm[:, 16, 0])
    assert np.corrcoef(augmented["pose"][:, 0].numpy(), nose_offset)[0, 1] > 0.8
    adversary = trainer.adversary
    assert adversary.pose is not None and adversary.pose.out_features == 3
    parts = trainer.train_step(0, trainer._batches(0))
    assert math.isfinite(parts["true_face_pose"]) and math.isfinite(parts["true_face_d"])
