"""`faceloom train`, `faceloom pretrain` and `faceloom model info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faceloom.cli import app, echo, echo_json, state, warn
from faceloom.config import DeviceChoice, Precision, TrainConfig

model_app = typer.Typer(help="Inspect trained models.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def _progress(total: int | None, start: int) -> tuple[Any, Any]:
    """A tqdm bar over training steps and the callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", disable=state.quiet, dynamic_ncols=True, leave=False)

    def update(report: Any) -> None:
        bar.n = report.step - start if total else report.step
        if report.step % 5 == 0:
            shown = {k: f"{v:.4f}" for k, v in report.losses.items() if k.startswith("loss_")}
            shown["faces/s"] = f"{report.faces_per_s:.0f}"
            bar.set_postfix(shown, refresh=False)
            bar.refresh()

    return bar, update


def _run_training(
    a: Path | None, b: Path | None, out: Path, config: TrainConfig, resume: bool, as_json: bool
) -> None:
    from faceloom.runtime import pin_threads
    from faceloom.train.modeldir import ModelDir
    from faceloom.train.trainer import train

    pin_threads(config.threads)
    start = ModelDir.load(out).step if resume and ModelDir.exists(out) else 0
    bar, update = _progress(config.iterations, start)
    try:
        result = train(a, b, out, config, resume=resume, progress=update)
    finally:
        bar.close()
    for w in result.warnings:
        warn(w)
    summary = {
        "model_dir": str(result.model_dir),
        "steps": result.step - result.start_step,
        "step": result.step,
        "stopped_by": result.stopped_by,
        "seconds": round(result.seconds, 1),
        "faces_per_s": round(result.faces_per_s, 1),
        "losses": {k: round(v, 5) for k, v in result.losses.items()},
        "holdout": {k: round(v, 4) for k, v in result.holdout.items()},
    }
    if as_json:
        echo_json(summary)
        return
    held = ", ".join(f"{k.removeprefix('holdout_')} {v:.3f}" for k, v in result.holdout.items())
    echo(
        f"trained to step {result.step} ({summary['steps']} steps, {result.seconds:.0f} s, "
        f"{result.faces_per_s:.1f} faces/s; stopped by {result.stopped_by}); held-out {held}"
    )
    latest = result.model_dir / "previews" / "latest.png"
    echo(f"model: {result.model_dir}" + (f"  preview: {latest}" if latest.exists() else ""))


@app.command()
def train(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Model dir to create (or continue with --resume).")
    ],
    a: Annotated[
        Path | None, typer.Option("--a", help="Faceset of person A (the face in the video).")
    ] = None,
    b: Annotated[Path | None, typer.Option("--b", help="Faceset of person B (the face put in).")] = None,
    model: Annotated[
        str, typer.Option(help="Architecture: lite, original or loom (default, 128 px).")
    ] = "loom",
    iterations: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Faces per side per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Learning-rate warm-up steps.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[DeviceChoice, typer.Option()] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto = bf16 on CPUs/GPUs that have it.")] = "auto",
    no_flip_a: Annotated[bool, typer.Option("--no-flip-a", help="Do not mirror A's faces.")] = False,
    no_flip_b: Annotated[bool, typer.Option("--no-flip-b", help="Do not mirror B's faces.")] = False,
    no_warp: Annotated[bool, typer.Option("--no-warp", help="Turn off the random grid warp.")] = False,
    warp_strength: Annotated[
        float | None,
        typer.Option(
            "--warp-strength",
            help="Scale of the grid warp: 1.0 is faceswap's; default: the model's (original 1.0, loom 0.5).",
        ),
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            "--ema-decay",
            help="Save and swap with an average of the recent weights (about 1/(1-X) steps); "
            "0 = the raw weights; default: the model's (lite and loom 0.999, original 0 as faceswap).",
        ),
    ] = None,
    yaw_balance: Annotated[bool, typer.Option("--yaw-balance", help="Sample rare head angles more.")] = False,
    gan: Annotated[bool, typer.Option("--gan", help="Add a patch discriminator (adversarial loss).")] = False,
    gan_weight: Annotated[float, typer.Option("--gan-weight")] = 0.1,
    holdout_share: Annotated[float, typer.Option("--holdout-share")] = 0.1,
    save_every: Annotated[int, typer.Option("--save-every")] = 250,
    snapshot_every: Annotated[
        int, typer.Option("--snapshot-every", help="Keep a snapshot every N steps.")
    ] = 0,
    preview_every: Annotated[int, typer.Option("--preview-every")] = 250,
    log_every: Annotated[int, typer.Option("--log-every", help="Write losses every N steps.")] = 10,
    init_from: Annotated[
        Path | None, typer.Option("--init-from", help="Start from a trained model (fine-tune a new pair).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the model in --out exactly.")] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train the shared encoder and one decoder per person. Ctrl-C saves, then stops."""
    config = TrainConfig(
        model=model,
        iterations=iterations,
        minutes=minutes,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup,
        seed=seed,
        device=device,
        precision=precision,
        flip_a=not no_flip_a,
        flip_b=not no_flip_b,
        warp=not no_warp,
        warp_strength=warp_strength,
        ema_decay=ema_decay,
        yaw_balance=yaw_balance,
        gan=gan,
        gan_weight=gan_weight,
        holdout_share=holdout_share,
        save_every=save_every,
        snapshot_every=snapshot_every,
        preview_every=preview_every,
        eval_every=preview_every,
        log_every=log_every,
        init_from=str(init_from) if init_from else None,
        threads=threads,
    )
    _run_training(a, b, out, config, resume, as_json)


@model_app.command("info")
def model_info(
    model_dir: Annotated[Path, typer.Argument(help="A model dir made by faceloom train.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a model is, how far it trained, and its latest losses."""
    from faceloom.train.modeldir import ModelDir
    from faceloom.train.trainer import iter_log

    mdir = ModelDir.load(model_dir)
    meta = mdir.meta
    rows = list(iter_log(model_dir))
    last_scores = {}
    for r in rows:
        last_scores.update({k: v for k, v in r.items() if v not in ("", None)})
    info: dict[str, Any] = {
        "model_dir": str(mdir.root),
        "architecture": meta.get("architecture"),
        "resolution": meta.get("resolution"),
        "crop": meta.get("crop"),
        "has_mask": meta.get("has_mask"),
        "step": mdir.step,
        "checkpoint": meta.get("checkpoint"),
        "facesets": meta.get("facesets"),
        "holdout": {s: h.get("description") for s, h in meta.get("holdout", {}).items()},
        "init_from": meta.get("init_from"),
        "latest": last_scores,
        "version": meta.get("faceloom_version"),
    }
    if as_json:
        echo_json(info)
        return
    echo(f"{info['architecture']} model, {info['resolution']} px {info['crop']} crop, step {info['step']}")
    for s, fs in (info["facesets"] or {}).items():
        echo(f"  {s.upper()}: {fs['faces']} faces from {fs['path']}")
    for s, d in info["holdout"].items():
        echo(f"  held out of {s.upper()}: {d}")
    if last_scores:
        echo("  latest: " + ", ".join(f"{k} {v}" for k, v in last_scores.items() if k != "step"))


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="A model dir made by faceloom train.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="Output .onnx file.")],
    to: Annotated[
        str, typer.Option("--to", help="Which decoder: b renders B's face (default), a renders A's.")
    ] = "b",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Export encoder + one decoder to ONNX (input: aligned face, B x 3 x R x R in [0, 1])."""
    from faceloom.train.export import export_onnx

    if to not in ("a", "b"):
        raise typer.BadParameter("--to must be a or b")
    summary = export_onnx(model_dir, onnx, to)  # type: ignore[arg-type]
    if as_json:
        echo_json(summary)
    else:
        echo(f"wrote {onnx} ({summary['resolution']} px, outputs {', '.join(summary['outputs'])})")


@app.command()
def pretrain(
    faces: Annotated[
        list[Path], typer.Option("--faces", help="Facesets of many people (repeat the option).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model dir for the face prior.")],
    model: Annotated[str, typer.Option()] = "loom",
    iterations: Annotated[int | None, typer.Option()] = None,
    minutes: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    device: Annotated[DeviceChoice, typer.Option()] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option("--resume")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train a general face prior on many people; start new pairs from it with train --init-from."""
    from faceloom.runtime import pin_threads
    from faceloom.train.pretrain import pretrain as run_pretrain

    pin_threads()
    config = TrainConfig(
        model=model, iterations=iterations, minutes=minutes, batch_size=batch_size, device=device, seed=seed
    )
    result = run_pretrain(faces, out, config, resume=resume)
    summary = {"model_dir": str(result.model_dir), "step": result.step, "holdout": result.holdout}
    if as_json:
        echo_json(summary)
    else:
        echo(f"face prior trained to step {result.step} -> {result.model_dir}")
