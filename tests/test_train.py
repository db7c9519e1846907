"""Training on real faces: it learns, its swaps move toward the wanted identity, resume is exact,
a killed run stays loadable, DDP matches one process, ONNX matches PyTorch, bad input is refused."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faceloom.cli.options import Given
from faceloom.cli.train import resumed_config
from faceloom.config import ExtractConfig, TrainConfig
from faceloom.errors import FormatError, InputError
from faceloom.evaluation.crops import identity_scores
from faceloom.extract import extract
from faceloom.faces.faceset import Faceset
from faceloom.media.writer import read_label
from faceloom.train.data import FaceData
from faceloom.train.modeldir import ModelDir
from faceloom.train.models import create_model, load_model, start_from
from faceloom.train.trainer import Trainer, TrainError, train
from tests.conftest import LITE_STEPS
from tests.conftest import lite_config as lite

REPO = Path(__file__).resolve().parent.parent


def _log(model_dir: Path) -> list[dict[str, str]]:
    with open(model_dir / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_lite_learns_holdout_faces(pair: tuple[Path, Path], trained_lite: Path) -> None:
    untrained = Trainer(pair[0], pair[1], trained_lite.parent / "untrained", lite(iterations=1)).evaluate()
    _, mdir = load_model(trained_lite)
    assert mdir.step == LITE_STEPS and mdir.meta["architecture"] == "lite"
    rows = _log(trained_lite)
    trained = {k: float(v) for k, v in rows[-1].items() if k.startswith("holdout_ssim_") and v}
    if not trained:
        trained = {k: float(v) for r in rows for k, v in r.items() if k.startswith("holdout_ssim_") and v}
    for side in ("a", "b"):
        assert trained[f"holdout_ssim_{side}"] > untrained[f"holdout_ssim_{side}"] + 0.15, (
            trained,
            untrained,
        )
    losses = [float(r["loss_a"]) + float(r["loss_b"]) for r in rows]
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    # held-out faces are whole clips or contiguous blocks, never trained on
    for side in ("a", "b"):
        h = mdir.meta["holdout"][side]
        assert h["holdout_ids"] and not set(h["holdout_ids"]) & set(h["train_ids"])
    preview = trained_lite / "previews" / "latest.png"
    assert preview.exists() and read_label(preview) is not None


def test_swaps_move_toward_wanted_identity(pair: tuple[Path, Path], trained_lite: Path) -> None:
    fs_a = Faceset.load(pair[0])
    model, mdir = load_model(trained_lite)
    held = set(mdir.meta["holdout"]["a"]["holdout_ids"])
    records = [r for r in fs_a.records if r.id in held][:12]
    emb_a = np.asarray(mdir.meta["embeddings"]["a"])
    emb_b = np.asarray(mdir.meta["embeddings"]["b"])
    torch.manual_seed(0)
    fresh = create_model("lite")
    before = identity_scores(fresh, fs_a, records, "b", emb_b, emb_a)
    after = identity_scores(model, fs_a, records, "b", emb_b, emb_a)
    # Trained swaps of A's held-out faces sit closer to B than untrained output does, and closer
    # to B than to A relative to where they started.
    assert after.to_target < before.to_target - 0.05, (before, after)
    assert after.to_target - after.to_source < before.to_target - before.to_source, (before, after)


def test_resume_continues_the_exact_fp32_curve(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = lite(precision="fp32", batch_size=4, save_every=10, preview_every=0, eval_every=0, log_every=1)
    cfg = replace(
        cfg, schedule="constant"
    )  # each train() call is its own budget (phases: test_train_schedule)
    train(pair[0], pair[1], tmp_path / "straight", replace(cfg, iterations=20))
    train(pair[0], pair[1], tmp_path / "resumed", replace(cfg, iterations=10))
    train(None, None, tmp_path / "resumed", replace(cfg, iterations=10), resume=True)
    straight, resumed = _log(tmp_path / "straight"), _log(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [str(i) for i in range(1, 21)]
    for r1, r2 in zip(straight, resumed, strict=True):
        assert float(r1["loss_a"]) == pytest.approx(float(r2["loss_a"]), rel=1e-5, abs=1e-6)
        assert float(r1["loss_b"]) == pytest.approx(float(r2["loss_b"]), rel=1e-5, abs=1e-6)


def test_weight_average_is_saved_and_resume_keeps_it_exact(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """With --ema-decay the checkpoint's weights are the average of the trained ones (what convert,
    export and --init-from load), the raw weights travel beside them, and --resume continues both
    exactly; the held-out score is taken on the average."""
    cfg = lite(precision="fp32", batch_size=4, save_every=10, preview_every=0, eval_every=0, log_every=1)
    cfg = replace(
        cfg, schedule="constant"
    )  # each train() call is its own budget (phases: test_train_schedule)
    cfg = replace(cfg, ema_decay=0.9)
    straight = Trainer(pair[0], pair[1], tmp_path / "straight", replace(cfg, iterations=20))
    result = straight.run()
    train(pair[0], pair[1], tmp_path / "resumed", replace(cfg, iterations=10))
    train(None, None, tmp_path / "resumed", replace(cfg, iterations=10), resume=True)
    a_log, b_log = _log(tmp_path / "straight"), _log(tmp_path / "resumed")
    for r1, r2 in zip(a_log, b_log, strict=True):
        assert float(r1["loss_a"]) == pytest.approx(float(r2["loss_a"]), rel=1e-5, abs=1e-6)
    saved = {n: ModelDir.load(tmp_path / n) for n in ("straight", "resumed")}
    raw = {n: m.load_train_weights() for n, m in saved.items()}
    avg = {n: m.load_weights() for n, m in saved.items()}
    assert raw["straight"] is not None and raw["resumed"] is not None
    for key, value in avg["straight"].items():
        torch.testing.assert_close(avg["resumed"][key], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(raw["resumed"][key], raw["straight"][key], rtol=1e-5, atol=1e-6)
    # The average lags the trained weights, so the two differ.
    lag = [float((avg["straight"][k] - raw["straight"][k]).abs().max()) for k in avg["straight"]]
    assert max(lag) > 1e-4
    # Inference loads the average; the trainer scores it.
    model, _ = load_model(tmp_path / "straight")
    for key, value in model.state_dict().items():
        assert torch.equal(value, avg["straight"][key])
    assert straight.average is not None and straight.inference_model is straight.average.module
    assert result.holdout == straight.evaluate()


def test_weight_average_follows_its_decay_schedule() -> None:
    from faceloom.train.ema import WeightAverage, ema_decay

    assert ema_decay(0, 0.999) == pytest.approx(0.1) and ema_decay(8, 0.999) == pytest.approx(0.5)
    assert ema_decay(10**6, 0.999) == 0.999
    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net, cap=0.5)
    expected = [p.detach().clone() for p in net.parameters()]
    for step in range(12):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        avg.update(step)
        d = ema_decay(step, 0.5)
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, net.parameters(), strict=True)]
    for got, want in zip(avg.module.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)
        assert not got.requires_grad
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, cap=1.0)


def test_killed_training_stays_loadable_and_resumes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "faceloom", "-q", "train", "--a", pair[0], "--b", pair[1], "--out", out]
    cmd += [
        "--model",
        "lite",
        "--iterations",
        "100000",
        "--save-every",
        "3",
        "--preview-every",
        "0",
        "--batch-size",
        "4",
    ]
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if ModelDir.exists(out) and ModelDir.load(out).step >= 9:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        time.sleep(0.37)  # land somewhere inside the next save
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    _, mdir = load_model(out)
    step = mdir.step
    assert step >= 9 and step % 3 == 0
    result = train(None, None, out, lite(iterations=3, batch_size=4), resume=True)
    assert result.step == step + 3 and result.start_step == step


def _torchrun(args: list[str], port: int) -> subprocess.CompletedProcess[str]:
    """``faceloom ARGS`` in two processes under torchrun (gloo on the CPU), one thread each."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, "-m", "faceloom", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_ddp_two_processes_match_one(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """With true face on (loom's default), whose discriminator trains beside the model."""
    common = ["train", "--a", str(pair[0]), "--b", str(pair[1]), "--model", "lite", "--iterations", "3"]
    common += ["--true-face", "0.1"]
    common += ["--precision", "fp32", "--batch-size", "8", "--preview-every", "0", "--save-every", "3"]
    common += ["--log-every", "1", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "faceloom", *common[:-1], "--out", str(tmp_path / "one"), "--threads", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    ddp = _torchrun([*common[:-1], "--out", str(tmp_path / "two"), "--threads", "1"], port=29517)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert len(one) == len(two) == 3
    for r1, r2 in zip(one, two, strict=True):
        assert float(r1["loss_a"]) == pytest.approx(float(r2["loss_a"]), rel=1e-3)
        assert float(r1["loss_b"]) == pytest.approx(float(r2["loss_b"]), rel=1e-3)
        assert float(r1["true_face_d"]) == pytest.approx(float(r2["true_face_d"]), rel=1e-3)


def test_fp16_trains_with_a_loss_scale(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """fp16 gradients underflow without a loss scale: fp16 turns the trainer's scaler on (bf16 and
    fp32 leave it off), and a scaled fp16 step moves the weights and keeps them finite."""
    for precision in ("fp32", "bf16", "fp16"):
        trainer = Trainer(
            pair[0], pair[1], tmp_path / precision, lite(precision=precision, iterations=1, batch_size=4)
        )
        assert trainer.scaler.is_enabled() == (precision == "fp16")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step(0, trainer._batches(0))
    after = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert trainer.scaler.get_scale() > 1.0


def test_ddp_stops_every_rank_at_rank0s_minutes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """Under torchrun a --minutes run stops on rank 0's clock: every rank stops after the same step
    (none waits in an all-reduce for a step the others skipped), and the model is saved there."""
    out = tmp_path / "ddp"
    args = ["train", "--a", str(pair[0]), "--b", str(pair[1]), "--out", str(out), "--model", "lite"]
    args += ["--minutes", "0.1", "--precision", "fp32", "--batch-size", "8", "--preview-every", "0"]
    args += ["--log-every", "1", "--threads", "1"]
    run = _torchrun(args, port=29518)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stopped by minutes" in run.stdout
    steps = [int(row["step"]) for row in _log(out)]
    assert len(steps) >= 2 and steps == list(range(1, len(steps) + 1))
    assert ModelDir.load(out).step == steps[-1]


def test_onnx_export_matches_pytorch(pair: tuple[Path, Path], trained_lite: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from faceloom.evaluation.crops import model_inputs

    out = tmp_path / "lite_b.onnx"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "faceloom",
            "export",
            str(trained_lite),
            "--onnx",
            str(out),
            "--to",
            "b",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["to"] == "b"
    model, _ = load_model(trained_lite)
    fs_a = Faceset.load(pair[0])
    faces = model_inputs(fs_a, fs_a.records[:5], model.crop, model.resolution)
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected, _ = model(x, "b")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"face": x.numpy()})[0]
    assert got.shape == tuple(expected.shape)
    assert float(np.abs(got - expected.numpy()).max()) < 1e-3
    meta = {p.key: p.value for p in __import__("onnx").load(str(out)).metadata_props}
    assert meta["faceloom_architecture"] == "lite" and meta["faceloom_to"] == "b"


def test_init_from_a_trained_model_starts_ahead(
    pair: tuple[Path, Path], trained_lite: Path, tmp_path: Path
) -> None:
    cfg = lite(iterations=20, preview_every=0, eval_every=20, save_every=20)
    scratch = train(pair[1], pair[0], tmp_path / "scratch", cfg)
    warm = train(pair[1], pair[0], tmp_path / "warm", replace(cfg, init_from=str(trained_lite)))
    assert ModelDir.load(tmp_path / "warm").meta["init_from"]["step"] == LITE_STEPS
    for side in ("a", "b"):
        assert warm.holdout[f"holdout_ssim_{side}"] > scratch.holdout[f"holdout_ssim_{side}"] + 0.05


def test_init_from_at_a_bigger_side_grows_the_trained_model(
    pair: tuple[Path, Path], trained_lite: Path, tmp_path: Path
) -> None:
    """Progressive resolution: --init-from a 64 px model with --resolution 128. Every conv carries
    over as it is, the dense bottleneck's cells are resampled, and the grown model starts far ahead
    of a fresh one at 128."""
    src = ModelDir.load(trained_lite)
    small, big = start_from(src), start_from(src, 128)
    assert (small.resolution, big.resolution) == (64, 128)
    grown = big.state_dict()
    for key, value in small.state_dict().items():
        if not key.startswith(("encoder.dense1.", "encoder.dense2.")):
            assert torch.equal(grown[key], value), key
    # dense1 reads a grid four times as big with weights scaled by a quarter: a feature map that is
    # the same in every cell gives the same latent at both sides.
    deep = small.encoder.deep
    assert isinstance(deep, int)
    feature = torch.rand(1, deep, 1, 1)
    dense_64, dense_128 = small.encoder.dense1, big.encoder.dense1
    assert isinstance(dense_64, torch.nn.Linear) and isinstance(dense_128, torch.nn.Linear)
    with torch.no_grad():
        at_64 = dense_64(feature.expand(1, deep, 4, 4).flatten(1))
        at_128 = dense_128(feature.expand(1, deep, 8, 8).flatten(1))
    assert torch.allclose(at_64, at_128, rtol=0.05, atol=0.05 * float(at_64.abs().mean()))

    cfg = lite(resolution=128, iterations=20, preview_every=0, eval_every=20, save_every=20)
    scratch = train(pair[0], pair[1], tmp_path / "scratch", cfg)
    warm = train(pair[0], pair[1], tmp_path / "grown", replace(cfg, init_from=str(trained_lite)))
    meta = ModelDir.load(tmp_path / "grown").meta
    assert meta["arch"]["resolution"] == 128
    assert meta["init_from"]["step"] == LITE_STEPS and meta["init_from"]["resolution"] == 64
    assert load_model(tmp_path / "grown")[0].resolution == 128
    for side in ("a", "b"):
        assert warm.holdout[f"holdout_ssim_{side}"] > scratch.holdout[f"holdout_ssim_{side}"] + 0.05


def test_warp_strength_comes_from_the_model_unless_given(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """--warp-strength overrides the architecture's default (lite and original: faceswap's 1.0;
    loom: 0.5); --no-warp turns the warp off whatever the strength; --resume keeps the first run's
    settings unless the command changes them."""
    cases = [
        (lite(), 1.0, True),
        (lite(warp_strength=0.25), 0.25, True),
        (lite(model="loom"), 0.5, True),
        (lite(warp=False, warp_strength=0.5), 0.5, False),
    ]
    for i, (cfg, strength, warp) in enumerate(cases):
        trainer = Trainer(pair[0], pair[1], tmp_path / f"m{i}", cfg)
        for side in ("a", "b"):
            aug = trainer.data[side].augment
            assert (aug.warp_strength, aug.warp) == (strength, warp)
        batch = trainer.data["a"].batch(0, 2)
        assert np.array_equal(batch.warped, batch.target) != warp

    # On --resume the warp settings of the command apply to that run (a finishing stretch without it);
    # what the command does not give again is the saved run's (faceloom.cli.train.resumed_config).
    def resumed_with(out: Path, **given: Any) -> TrainConfig:
        return resumed_config(out, Given({TrainConfig: given}))

    resumed = Trainer(None, None, tmp_path / "m2", resumed_with(tmp_path / "m2", warp=False), resume=True)
    assert (resumed.data["b"].augment.warp, resumed.data["b"].augment.warp_strength) == (False, 0.5)
    kept = Trainer(None, None, tmp_path / "m1", resumed_with(tmp_path / "m1"), resume=True)
    assert kept.data["a"].augment.warp_strength == 0.25
    # lite and loom save a weight average unless told not to; resume keeps the first run's choice.
    assert kept.average is not None and kept.average.cap == 0.999
    raw = Trainer(pair[0], pair[1], tmp_path / "raw", lite(ema_decay=0.0))
    assert raw.average is None and raw.inference_model is raw.model
    assert Trainer(None, None, tmp_path / "raw", resumed_with(tmp_path / "raw"), resume=True).average is None


def test_bad_training_input(pair: tuple[Path, Path], trained_lite: Path, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    fs = Faceset.load(pair[0])
    small = Faceset.create(tiny, size=fs.size, crop=fs.crop, image_format=fs.image_format)
    for r in fs.records[:5]:
        (tiny / r.file).write_bytes(fs.image_path(r).read_bytes())
        small.records.append(r)
    small.save()
    with pytest.raises(InputError, match="only 5 faces"):
        train(tiny, pair[1], tmp_path / "m1", lite(iterations=1))
    other_size = tmp_path / "other_size"
    extract(
        [REPO.parent / "shared" / "data" / "grid" / "bbaf2n.mpg"],
        other_size,
        ExtractConfig(size=256, every_n=5),
    )
    with pytest.raises(InputError, match="extract both with the same --size"):
        train(pair[0], other_size, tmp_path / "m2", lite(iterations=1))
    with pytest.raises(FormatError, match="'lite' model"):
        train(
            pair[0],
            pair[1],
            tmp_path / "m3",
            lite(model="original", iterations=1, init_from=str(trained_lite)),
        )
    with pytest.raises(InputError, match="already exists"):
        train(pair[0], pair[1], trained_lite, lite(iterations=1))
    meta = json.loads((trained_lite / "model.json").read_text())
    future = tmp_path / "future"
    future.mkdir()
    (future / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(FormatError, match="version 99"):
        load_model(future)


def test_nan_loss_stops_and_keeps_last_checkpoint(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "nan"
    train(pair[0], pair[1], out, lite(iterations=4, save_every=2, batch_size=4, preview_every=0))
    good = {k: v.clone() for k, v in load_model(out)[0].state_dict().items()}
    real_batch = FaceData.batch

    def poisoned(self: FaceData, step: int, batch_size: int, **kw: Any) -> Any:
        b = real_batch(self, step, batch_size, **kw)
        if step >= 6:  # a corrupt sample makes the loss NaN after the step-6 checkpoint
            b.target[:] = np.nan
        return b

    monkeypatch.setattr(FaceData, "batch", poisoned)
    with pytest.raises(TrainError, match="loss became nan at step 6; kept the checkpoint of step 6"):
        train(None, None, out, lite(iterations=50, save_every=2, batch_size=4, preview_every=0), resume=True)
    model, mdir = load_model(out)
    assert mdir.step == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(good[k], v) for k, v in model.state_dict().items()), "steps 4-6 were kept"


def test_gan_option_and_pretrain_prior(pair: tuple[Path, Path], tmp_path: Path) -> None:
    gan = train(pair[0], pair[1], tmp_path / "gan", lite(iterations=10, batch_size=4, gan=True, log_every=1))
    rows = _log(tmp_path / "gan")
    assert {"gan_g_a", "gan_d_a", "gan_g_b", "gan_d_b"} <= set(rows[-1])
    last = [r for r in rows if r["phase"] == "sharpen"]  # the phased schedule's GAN: the last fifth
    assert len(last) == 2 and all(np.isfinite(float(r["gan_d_a"])) for r in last)
    assert all(r["gan_d_a"] == "" for r in rows if r["phase"] != "sharpen")
    assert gan.step == 10
    # the discriminators' state travels with the checkpoint, so a GAN run resumes too
    resumed = train(None, None, tmp_path / "gan", lite(iterations=2, batch_size=4), resume=True)
    assert resumed.step == 12

    from faceloom.train.pretrain import pretrain

    prior = pretrain([pair[0], pair[1]], tmp_path / "prior", lite(iterations=3, batch_size=4))
    meta = ModelDir.load(prior.model_dir).meta
    fs = meta["facesets"]
    assert fs["a"]["path"] == fs["b"]["path"]
    assert fs["a"]["faces"] == len(Faceset.load(pair[0]).records) + len(Faceset.load(pair[1]).records)
