"""`faceloom train`, `faceloom pretrain`, `faceloom export` and `faceloom model info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faceloom.cli.options import Given, as_flag_error, offer, settings_options
from faceloom.cli.output import echo, echo_json, warn
from faceloom.cli.progress import Bars
from faceloom.config import TrainConfig
from faceloom.config.choices import Side
from faceloom.config.meta import SettingError, carried_over, changed_shape
from faceloom.errors import InputError


def resumed_config(out: Path, given: Given) -> TrainConfig:
    """The settings a resumed model trains with: what shapes it as it was trained (a different value
    asked for is refused, naming the flag), the rest as saved unless given again; stop rules and
    machine settings only from this command."""
    from faceloom.train.modeldir import ModelDir

    if not ModelDir.exists(out):
        raise InputError("nothing to resume: no model.json here", out)
    saved = TrainConfig.from_dict(ModelDir.load(out).meta.get("train", {}))
    config = given.config(TrainConfig, base=carried_over(saved))
    for info in changed_shape(saved, config):
        flag = as_flag_error(SettingError(info.key, ""), TrainConfig).key
        raise SettingError(
            flag,
            f"shapes the model and cannot change on a trained one (trained with "
            f"{getattr(saved, info.name)!r}, asked for {getattr(config, info.name)!r}); "
            f"train into a new --out, or leave {flag} out to continue",
        )
    return config


@settings_options(offer(TrainConfig))
def train(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Model dir to create (or continue with --resume).")
    ],
    a: Annotated[
        Path | None, typer.Option("--a", help="Faceset of person A (the face in the video).")
    ] = None,
    b: Annotated[Path | None, typer.Option("--b", help="Faceset of person B (the face put in).")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the model in --out: settings not given again are the saved ones; those that "
            "shape the model cannot change.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    *,
    given: Given,
) -> None:
    """Train the shared encoder and one decoder per person. Ctrl-C saves, then stops."""
    from faceloom.runtime import pin_threads
    from faceloom.train.modeldir import ModelDir
    from faceloom.train.trainer import train as run_train

    config = resumed_config(out, given) if resume else given.config(TrainConfig)
    pin_threads(config.threads)
    start = ModelDir.load(out).step if resume and ModelDir.exists(out) else 0
    bars = Bars("step")
    try:
        result = run_train(a, b, out, config, resume=resume, progress=bars)
    except SettingError as exc:  # a value only the facesets or the architecture refuse
        raise as_flag_error(exc, TrainConfig) from None
    finally:
        bars.close()
    for w in result.warnings:
        warn(w)
    summary = {
        "model_dir": str(result.model_dir),
        "steps": result.step - result.start_step,
        "step": result.step,
        "start_step": start,
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


def model_info(
    model_dir: Annotated[Path, typer.Argument(help="A model dir made by faceloom train.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a model is, how far it trained, and its latest losses."""
    from faceloom.train.log import latest_values
    from faceloom.train.modeldir import ModelDir

    mdir = ModelDir.load(model_dir)
    meta = mdir.meta
    last_scores = latest_values(model_dir)
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


def export(
    model_dir: Annotated[Path, typer.Argument(help="A model dir made by faceloom train.")],
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Output .onnx file.")] = None,
    dfm: Annotated[
        Path | None,
        typer.Option("--dfm", help="Output .dfm for DeepFaceLive (train with --crop dfl_whole_face)."),
    ] = None,
    to: Annotated[
        Side, typer.Option("--to", help="Which decoder: b renders B's face (default), a renders A's.")
    ] = "b",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Export encoder + one decoder to ONNX (input: aligned face, B x 3 x R x R in [0, 1]) or to
    DeepFaceLab's .dfm."""
    from faceloom.train.export import export_dfm, export_onnx

    if onnx is None and dfm is None:
        raise InputError("say where to write: --onnx OUT.onnx or --dfm OUT.dfm", model_dir)
    summaries = []
    if onnx is not None:
        summary = export_onnx(model_dir, onnx, to)
        summaries.append(summary)
        if not as_json:
            echo(f"wrote {onnx} ({summary['resolution']} px, outputs {', '.join(summary['outputs'])})")
    if dfm is not None:
        summary = export_dfm(model_dir, dfm, to)
        summaries.append(summary)
        if not as_json:
            echo(f"wrote {dfm} ({summary['resolution']} px DFL whole_face, {summary['masks']} masks)")
    if as_json:
        echo_json(summaries[0] if len(summaries) == 1 else summaries)


@settings_options(offer(TrainConfig, only=["model", "iterations", "minutes", "batch_size", "device", "seed"]))
def pretrain(
    faces: Annotated[
        list[Path], typer.Option("--faces", help="Facesets of many people (repeat the option).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model dir for the face prior.")],
    resume: Annotated[bool, typer.Option("--resume")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    *,
    given: Given,
) -> None:
    """Train a general face prior on many people; start new pairs from it with train --init-from."""
    from faceloom.runtime import pin_threads
    from faceloom.train.pretrain import pretrain as run_pretrain

    pin_threads()
    config = resumed_config(out, given) if resume else given.config(TrainConfig)
    with Bars("step") as bars:
        result = run_pretrain(faces, out, config, resume=resume, progress=bars)
    summary = {"model_dir": str(result.model_dir), "step": result.step, "holdout": result.holdout}
    if as_json:
        echo_json(summary)
    else:
        echo(f"face prior trained to step {result.step} -> {result.model_dir}")
