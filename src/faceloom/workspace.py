"""A workspace: one folder with every input, setting and output of a swap, and the stage runner.

Layout::

    faceloom.toml         every setting of every stage (editable; typed by faceloom.config)
    state.json            per stage: fingerprint of what it ran on, state, wall time, last error
    .lock                 flock-ed while a run is going; holds the pid of that run
    inputs/               URL inputs, downloaded
    facesets/a, b, target faces of A (their footage and the target), of B, and of the target alone
    analysis/             report.html, coverage.json
    model/                the model dir (checkpoints, previews, log)
    output/               swapped.mp4, side_by_side.mp4
    eval/                 eval.json

Stages run in order: extract -> analyze -> train -> convert -> eval. A stage is up to date when
the fingerprint of its inputs (its settings, its input files and the *current* outputs of the
stages it reads) equals the one recorded when it last finished, so a re-run skips it; a changed
setting redoes only the stages that read it, and an edited faceset (``faceloom faceset remove``)
redoes the stages after extract. Training resumes from the model's last checkpoint when only its
stop rules changed or a run was killed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import threading
import time
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from faceloom import __version__
from faceloom.config import (
    AnalyzeConfig,
    ConvertConfig,
    EarlyStopConfig,
    ExtractConfig,
    TrainConfig,
    fingerprint,
)
from faceloom.errors import FaceloomError, FormatError, InputError, OutputError
from faceloom.fetch import check_url, fetch, fetched_path, is_url
from faceloom.fsutil import atomic_write_text, ensure_dir

WORKSPACE_VERSION = 1
SETTINGS_FILE = "faceloom.toml"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"
STATE_FORMAT = "faceloom-workspace-state"

StageName = Literal["extract", "analyze", "train", "convert", "eval"]
STAGES: tuple[str, ...] = ("extract", "analyze", "train", "convert", "eval")
StageState = Literal["done", "stale", "pending", "running", "failed"]
ProgressFn = Callable[[str, float, str], None]
"""progress(stage, fraction 0..1, message). Each stage that runs reports ``(stage, 0.0, "started")``
first and ``(stage, 1.0, "done in N s")`` last; a stage that is skipped reports ``(stage, 1.0,
"up to date")`` (or why it was skipped) once."""

UPSTREAM: dict[str, tuple[str, ...]] = {
    "extract": (),
    "analyze": ("extract",),
    "train": ("extract",),
    "convert": ("extract", "train"),
    "eval": ("extract", "train", "convert"),
}
TRAIN_RUNTIME_KEYS = frozenset(
    {
        "iterations",
        "minutes",
        "device",
        "threads",
        "save_every",
        "snapshot_every",
        "preview_every",
        "eval_every",
        "log_every",
    }
)
"""TrainConfig fields that do not shape the model: changing them continues training, never restarts it."""
NO_STOP_RULE_MINUTES = 7 * 24 * 60.0
"""The trainer's time limit when the only stop rule is the held-out score levelling off."""
STATE_SAVE_EVERY_S = 15.0


class WorkspaceBusy(FaceloomError):
    """Another run holds the workspace's lock."""


class StrictWarnings(FaceloomError):
    """``--strict``: the analysis found problems, so the run stops before training."""

    exit_code = 1


class _Cancelled(Exception):
    pass


# ---- settings ---------------------------------------------------------------------------------


def _section_classes() -> dict[str, tuple[type, ...]]:
    """The typed configs behind each section of faceloom.toml (EvalConfig is imported lazily)."""
    from faceloom.analysis.evaluation import EvalConfig

    return {
        "extract": (ExtractConfig,),
        "analyze": (AnalyzeConfig,),
        "train": (TrainConfig, EarlyStopConfig),
        "convert": (ConvertConfig,),
        "eval": (EvalConfig,),
    }


SECTION_NOTES = {
    "inputs": "A = the person in the target video (the target is A footage too); B = the face put in. "
    "Local paths, folders or http(s) URLs.",
    "extract": "faceloom extract: applies to A and B; the target is always read frame by frame.",
    "analyze": "faceloom analyze: strict = stop before training when the report has warnings.",
    "train": "faceloom train: stops at iterations (total steps) or minutes (total), or when the held-out "
    "score gains less than min_delta over patience evaluations (every eval_every steps; 0 = off).",
    "convert": "faceloom convert: side_by_side = also write output/side_by_side.mp4.",
    "eval": "faceloom eval: scores of the model on held-out faces and flicker of output/swapped.mp4.",
}


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` (typed, or a string from the command line) as the type ``tp`` of setting ``name``."""
    optional, inner = _is_optional(tp)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))):
        return None
    if value is None:
        raise ValueError(f"{name} cannot be empty")
    origin = typing.get_origin(inner)
    if origin is Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")
    try:
        if inner is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number ({inner.__name__}), got {value!r}") from None
    if inner is str:
        return str(value)
    if origin is tuple:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(str(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def normalize_section(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every setting of ``section`` (defaults filled in), coerced and validated by its typed config.

    Raises ValueError for an unknown section or key or an invalid value.
    """
    classes = _section_classes().get(section)
    if classes is None:
        known = ", ".join(_section_classes())
        raise ValueError(f"unknown settings section {section!r}; sections: {known}")
    out: dict[str, Any] = {}
    used: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                kwargs[f.name] = coerce(values[f.name], hints[f.name], f"{section}.{f.name}")
                used.add(f.name)
        try:
            config = cls(**kwargs)
        except ValueError as exc:
            raise ValueError(f"{section}: {exc}") from None
        out.update({f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(cls)})
    unknown = sorted(set(values) - used)
    if unknown:
        raise ValueError(f"unknown setting {section}.{unknown[0]}; {section} has: {', '.join(sorted(out))}")
    return out


def _toml_str(text: str) -> str:
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: str | int | float | bool | list[str] | tuple[str, ...]) -> str:
    """One TOML value: a string, integer, float, boolean or list of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_str(str(v)) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(settings: dict[str, dict[str, Any]], notes: dict[str, str] | None = None) -> str:
    """A TOML document of one level of tables; None values are left out (they mean "default")."""
    lines = [
        "# faceloom workspace: every setting of every stage. Edit it, then run",
        "#   faceloom run --workspace DIR",
        "# again: only the stages a change affects are redone.",
    ]
    for section, values in settings.items():
        lines.append("")
        note = (notes or {}).get(section)
        if note:
            lines.append(f"# {note}")
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


# ---- state ------------------------------------------------------------------------------------


@dataclass
class StageStatus:
    state: StageState
    seconds: float | None = None
    """Wall time of its last successful run."""
    error: str | None = None
    """Last failure, one line."""
    finished: str | None = None
    """ISO time of its last successful run."""


@dataclass
class RunSummary:
    ran: list[str]
    skipped: list[str]
    seconds: dict[str, float]
    output: Path | None
    side_by_side: Path | None
    report: Path | None
    eval: dict[str, Any] | None
    warnings: list[str]
    cancelled: bool = False
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage that ran: what it recorded (e.g. train: step, stopped_by, holdout)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _file_fp(path: Path) -> str:
    from faceloom.faces.faceset import file_fingerprint

    return file_fingerprint(path) if path.is_file() else ""


def faceset_fingerprint(path: Path) -> str:
    """Content hash of a faceset folder (its face table and crop settings); "" when there is none."""
    header = path / "faceset.json"
    if not header.is_file():
        return ""
    h = hashlib.sha256()
    try:
        meta = json.loads(header.read_text())
        h.update(json.dumps([meta.get("size"), meta.get("crop"), meta.get("image_format")]).encode())
        table = path / "faces.jsonl"
        if table.is_file():
            h.update(table.read_bytes())
    except (OSError, json.JSONDecodeError):
        return "damaged"
    return h.hexdigest()[:16]


def model_fingerprint(path: Path) -> str:
    """Identity of the current checkpoint of a model dir; "" when there is none."""
    try:
        meta = json.loads((path / "model.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    ckpt = meta.get("checkpoint")
    weights = path / ckpt / "weights.safetensors" if ckpt else path / "none"
    return fingerprint([meta.get("created"), meta.get("step"), ckpt, _file_fp(weights)])


# ---- the workspace ----------------------------------------------------------------------------


class Workspace:
    """A workspace folder. Make one with :meth:`create`, load one with :meth:`open`."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.settings = settings

    # ---- construction ---------------------------------------------------------------------
    @staticmethod
    def is_workspace(root: str | Path) -> bool:
        return (Path(root) / SETTINGS_FILE).is_file()

    @classmethod
    def create(
        cls,
        root: str | Path,
        a: list[str],
        b: list[str],
        target: str | None,
        *,
        model: str = "lite",
        minutes: float | None = None,
        iterations: int | None = None,
        side_by_side: bool = True,
    ) -> Workspace:
        """Make a new workspace at ``root`` (a new or empty folder).

        Raises OutputError when ``root`` is a workspace already or a non-empty folder, InputError
        for a missing input, ValueError for a bad setting.
        """
        path = Path(root)
        if cls.is_workspace(path):
            raise OutputError("is a workspace already; open it (faceloom run --workspace DIR)", path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise OutputError("exists, is not empty and is not a faceloom workspace", path)
        settings: dict[str, Any] = {
            "workspace": {"version": WORKSPACE_VERSION, "created_by": f"faceloom {__version__}"},
            "inputs": _check_inputs(a, b, target),
        }
        for section in _section_classes():
            settings[section] = normalize_section(section, {})
        settings["train"] = normalize_section(
            "train", {"model": model, "minutes": minutes, "iterations": iterations}
        )
        settings["convert"] = normalize_section("convert", {"side_by_side": side_by_side})
        ws = cls(ensure_dir(path).resolve(), settings)
        ws.save()
        return ws

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        """Load a workspace. FormatError if ``root`` is none, is damaged or is from a newer faceloom."""
        path = Path(root)
        ws = cls(path.resolve(), {})
        ws.reload()
        return ws

    def reload(self) -> None:
        """Re-read faceloom.toml (another process, the UI or an editor may have changed it)."""
        path = self.root / SETTINGS_FILE
        if not path.is_file():
            raise FormatError(f"not a faceloom workspace (no {SETTINGS_FILE})", self.root)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FormatError(f"damaged settings file ({_one_line(exc)})", path) from exc
        meta = raw.get("workspace", {})
        version = meta.get("version")
        if not isinstance(version, int):
            raise FormatError("settings file has no [workspace] version", path)
        if version > WORKSPACE_VERSION:
            raise FormatError(
                f"workspace made by a newer faceloom ({meta.get('created_by', '?')}, workspace version "
                f"{version}); faceloom {__version__} reads version {WORKSPACE_VERSION}. Upgrade faceloom",
                self.root,
            )
        inputs = raw.get("inputs", {})
        settings: dict[str, Any] = {
            "workspace": meta,
            "inputs": {
                "a": [str(v) for v in inputs.get("a", [])],
                "b": [str(v) for v in inputs.get("b", [])],
                "target": inputs.get("target"),
            },
        }
        try:
            for section in _section_classes():
                settings[section] = normalize_section(section, raw.get(section, {}))
        except ValueError as exc:
            raise FormatError(str(exc), path) from None
        self.settings = settings

    def save(self) -> None:
        atomic_write_text(self.root / SETTINGS_FILE, dump_toml(self.settings, SECTION_NOTES))

    # ---- editing --------------------------------------------------------------------------
    def set_inputs(
        self, a: list[str] | None = None, b: list[str] | None = None, target: str | None = None
    ) -> None:
        """Replace A's inputs, B's inputs or the target (None leaves that one as it is), and save."""
        cur = self.settings["inputs"]

        def stored(raw: str) -> str:
            return raw if is_url(raw) else str(self.input_path(raw))

        old_target = cur.get("target")
        self.settings["inputs"] = _check_inputs(
            a if a is not None else [stored(x) for x in cur["a"]],
            b if b is not None else [stored(x) for x in cur["b"]],
            target if target is not None else (stored(old_target) if old_target else None),
        )
        self.save()

    def update_settings(self, section: str, values: dict[str, Any]) -> None:
        """Change some settings of one section (validated by its typed config) and save.

        Raises ValueError for an unknown section or key, or a value its config refuses.
        """
        merged = {**self.settings.get(section, {}), **values}
        self.settings[section] = normalize_section(section, merged)
        self.save()

    # ---- typed views ----------------------------------------------------------------------
    @property
    def inputs_a(self) -> list[str]:
        return list(self.settings["inputs"]["a"])

    @property
    def inputs_b(self) -> list[str]:
        return list(self.settings["inputs"]["b"])

    @property
    def target(self) -> str | None:
        t = self.settings["inputs"].get("target")
        return str(t) if t else None

    def extract_config(self) -> ExtractConfig:
        return ExtractConfig.from_dict(self.settings["extract"])

    def target_extract_config(self) -> ExtractConfig:
        """The target is read frame by frame with every face kept, so convert can use its faceset."""
        return replace(self.extract_config(), every_n=1, blur_threshold=0.0, identity_refs=())

    def analyze_config(self) -> AnalyzeConfig:
        return AnalyzeConfig(**self.settings["analyze"])

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.settings["train"])

    def early_stop(self) -> EarlyStopConfig:
        keys = {f.name for f in dataclasses.fields(EarlyStopConfig)}
        return EarlyStopConfig(**{k: v for k, v in self.settings["train"].items() if k in keys})

    def convert_config(self) -> ConvertConfig:
        return ConvertConfig.from_dict(self.settings["convert"])

    def eval_config(self) -> Any:
        from faceloom.analysis.evaluation import EvalConfig

        return EvalConfig(**self.settings["eval"])

    # ---- paths ----------------------------------------------------------------------------
    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    @property
    def faceset_a(self) -> Path:
        return self.root / "facesets" / "a"

    @property
    def faceset_b(self) -> Path:
        return self.root / "facesets" / "b"

    @property
    def faceset_target(self) -> Path:
        return self.root / "facesets" / "target"

    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    @property
    def report_html(self) -> Path:
        return self.analysis_dir / "report.html"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_video(self) -> Path:
        return self.root / "output" / "swapped.mp4"

    @property
    def side_by_side_video(self) -> Path:
        return self.root / "output" / "side_by_side.mp4"

    @property
    def eval_json(self) -> Path:
        return self.root / "eval" / "eval.json"

    def input_path(self, raw: str) -> Path:
        """A local input as an absolute path (relative ones are relative to the workspace)."""
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.root / p

    # ---- state ----------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        if not path.is_file():
            return {"format": STATE_FORMAT, "version": WORKSPACE_VERSION, "stages": {}}
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FormatError(
                f"damaged state file ({_one_line(exc)}); delete it to redo every stage", path
            ) from exc
        if int(data.get("version", 0)) > WORKSPACE_VERSION:
            raise FormatError("state file written by a newer faceloom; upgrade faceloom", path)
        data.setdefault("stages", {})
        return data

    def _write_stage(self, stage: str, record: dict[str, Any]) -> None:
        data = self.read_state()
        data["stages"][stage] = record
        data["updated"] = _now()
        atomic_write_text(self.root / STATE_FILE, json.dumps(data, indent=1, default=str))

    def lock_holder(self) -> int | None:
        """The pid of the run holding the workspace's lock (0 if unknown), or None when it is free."""
        path = self.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            return None
        finally:
            os.close(fd)  # closing drops the probe's own lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace's lock (an flock on .lock, released by the OS if the process dies).

        Raises WorkspaceBusy naming the other run's pid when it is held.
        """
        path = self.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            from faceloom.errors import output_error_from_os

            raise output_error_from_os(exc, path) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise WorkspaceBusy(
                    f"workspace {self.root} is in use by another faceloom run (pid {pid}); "
                    "wait for it to finish or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    # ---- fingerprints ---------------------------------------------------------------------
    def _input_fp(self, raw: str) -> Any:
        if is_url(raw):
            return {"url": raw}
        path = self.input_path(raw)
        if path.is_dir():
            from faceloom.media.sources import collect_sources

            try:
                files = [[str(s.path), _file_fp(s.path)] for s in collect_sources([path])]
            except InputError:
                files = []
            return {"dir": str(path), "files": files}
        return {"file": str(path), "fp": _file_fp(path)}

    def _train_shape(self) -> str:
        tc = {k: v for k, v in self.settings["train"].items() if k not in TRAIN_RUNTIME_KEYS}
        early = {f.name for f in dataclasses.fields(EarlyStopConfig)}
        tc = {k: v for k, v in tc.items() if k not in early}
        return fingerprint(
            {"a": faceset_fingerprint(self.faceset_a), "b": faceset_fingerprint(self.faceset_b), "train": tc}
        )

    def _eval_model_key(self) -> str:
        ec = {k: v for k, v in self.settings["eval"].items() if k != "device"}
        return fingerprint(
            {
                "model": model_fingerprint(self.model_dir),
                "a": faceset_fingerprint(self.faceset_a),
                "b": faceset_fingerprint(self.faceset_b),
                "eval": ec,
            }
        )

    def _video_fp(self) -> str:
        videos = [self.output_video]
        if self.convert_config().side_by_side:
            videos.append(self.side_by_side_video)
        return fingerprint([_file_fp(v) for v in videos])

    def stage_fingerprint(self, stage: str) -> str:
        """Fingerprint of what ``stage`` would run on now: its settings, inputs and upstream outputs."""
        target = self.target
        if stage == "extract":
            return fingerprint(
                {
                    "a": [self._input_fp(x) for x in self.inputs_a],
                    "b": [self._input_fp(x) for x in self.inputs_b],
                    "target": self._input_fp(target) if target else None,
                    "extract": self.extract_config().output_fingerprint(),
                    "target_extract": self.target_extract_config().output_fingerprint(),
                }
            )
        if stage == "analyze":
            return fingerprint(
                {
                    "a": faceset_fingerprint(self.faceset_a),
                    "b": faceset_fingerprint(self.faceset_b),
                    "target": faceset_fingerprint(self.faceset_target) if target else None,
                    "mirror_b": self.train_config().flip_b,
                }
            )
        if stage == "train":
            tc = self.train_config()
            return fingerprint(
                {
                    "shape": self._train_shape(),
                    "iterations": tc.iterations,
                    "minutes": tc.minutes,
                    "early_stop": self.early_stop().to_dict(),
                }
            )
        if stage == "convert":
            return fingerprint(
                {
                    "model": model_fingerprint(self.model_dir),
                    "target": self._input_fp(target) if target else None,
                    "target_faceset": faceset_fingerprint(self.faceset_target),
                    "convert": self.convert_config().output_fingerprint(),
                }
            )
        if stage == "eval":
            return fingerprint(
                {"model": self._eval_model_key(), "video": self._video_fp() if target else None}
            )
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")

    def _outputs_exist(self, stage: str) -> bool:
        if stage == "extract":
            sets = [self.faceset_a, self.faceset_b] + ([self.faceset_target] if self.target else [])
            return all((p / "faceset.json").is_file() for p in sets)
        if stage == "analyze":
            return self.report_html.is_file()
        if stage == "train":
            return (self.model_dir / "model.json").is_file()
        if stage == "convert":
            sbs = self.convert_config().side_by_side
            return self.output_video.is_file() and (not sbs or self.side_by_side_video.is_file())
        return self.eval_json.is_file()

    def upstream(self, stage: str) -> tuple[str, ...]:
        """The stages whose outputs ``stage`` reads (eval reads convert's video only with a target)."""
        ups = UPSTREAM[stage]
        return tuple(u for u in ups if u != "convert" or self.target)

    def status(self) -> dict[str, StageStatus]:
        """Each stage's state, its fingerprint compared with the current settings, inputs and outputs."""
        return self._status(holder=self.lock_holder())

    def _status(self, holder: int | None) -> dict[str, StageStatus]:
        stages = self.read_state()["stages"]
        out: dict[str, StageStatus] = {}
        for stage in STAGES:
            rec = stages.get(stage, {})
            recorded = rec.get("state")
            seconds, finished = rec.get("seconds"), rec.get("finished")
            ups_fresh = all(out[u].state == "done" for u in self.upstream(stage))
            error = None
            if recorded == "running" and holder is not None and holder in (0, rec.get("pid")):
                state: StageState = "running"
            elif recorded == "running":
                state, error = (
                    "failed",
                    "interrupted (the run stopped during this stage); run again to resume",
                )
            elif recorded == "failed":
                state, error = "failed", rec.get("error")
            elif recorded == "done":
                fresh = (
                    ups_fresh
                    and self._outputs_exist(stage)
                    and rec.get("fingerprint") == self.stage_fingerprint(stage)
                )
                state = "done" if fresh else "stale"
            else:
                state = "pending"
            out[stage] = StageStatus(state, seconds, error, finished)
        return out


def _check_inputs(a: list[str], b: list[str], target: str | None) -> dict[str, Any]:
    """Inputs as stored: URLs as given, local paths absolute (relative ones are taken relative to the
    current folder); InputError for a missing one."""

    def one(raw: str | Path, flag: str) -> str:
        text = str(raw)
        if is_url(text):
            check_url(text)
            return text
        path = Path(text).expanduser().resolve()
        if not path.exists():
            raise InputError(f"{flag}: no such file or folder", path)
        return str(path.resolve())

    if not a:
        raise InputError("no input for person A: give --a (videos, image folders or URLs)")
    if not b:
        raise InputError("no input for person B: give --b (videos, image folders or URLs)")
    out: dict[str, Any] = {"a": [one(x, "--a") for x in a], "b": [one(x, "--b") for x in b]}
    if target:
        t = one(target, "--target")
        if not is_url(t) and Path(t).is_dir():
            raise InputError("--target must be a video file (or a URL of one), not a folder", t)
        out["target"] = t
    return out


# ---- the runner -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    ws: Workspace
    progress: ProgressFn | None
    cancel: threading.Event
    extra: dict[str, Any] = field(default_factory=dict)
    """The running stage's record extras (train keeps its shape and seconds here, saved on failure)."""

    def report(self, stage: str, fraction: float, message: str) -> None:
        """Progress within a stage: below 1.0, which is kept for :meth:`finish`."""
        if self.progress is not None:
            self.progress(stage, min(0.999, max(0.0, fraction)), message)

    def finish(self, stage: str, message: str) -> None:
        if self.progress is not None:
            self.progress(stage, 1.0, message)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise _Cancelled

    def local(self, raw: str, stage: str) -> Path:
        """A local path for an input, downloading a URL (once) into inputs/."""
        if not is_url(raw):
            return self.ws.input_path(raw)
        found = fetched_path(raw, self.ws.inputs_dir)
        if found is not None:
            return found

        def on_bytes(done: int, total: int | None) -> None:
            size = f"{done / 1e6:.1f}" + (f" of {total / 1e6:.1f}" if total else "")
            self.report(stage, 0.0, f"downloading {raw}: {size} MB")

        return fetch(raw, self.ws.inputs_dir, progress=on_bytes, cancel=self.cancel)


def _prepare_faceset(out: Path, inputs: list[Path], config: ExtractConfig) -> None:
    """Make ``out`` fit for extract: drop faces of inputs no longer listed; start over when its crop
    size or image format differs from the settings."""
    from faceloom.faces.faceset import Faceset, source_key
    from faceloom.media.sources import collect_sources

    if not Faceset.is_faceset(out):
        if out.exists():
            shutil.rmtree(out)  # a folder left by a kill before the faceset header was written
        return
    fs = Faceset.load(out)
    if fs.size != config.size or fs.image_format != config.image_format:
        shutil.rmtree(out)
        return
    keys = {source_key(s.path) for s in collect_sources(inputs)}
    gone = [k for k in fs.sources if k not in keys]
    if gone:
        for k in gone:
            fs.header["sources"].pop(k, None)
        fs.remove({r.id for r in fs.records if r.source in gone})


def _stage_extract(run: _Run) -> _Outcome:
    from faceloom.extract import extract
    from faceloom.media.sources import classify, collect_sources

    ws = run.ws

    def local(raws: list[str], label: str) -> list[Path]:
        try:
            return [run.local(x, "extract") for x in raws]
        except InputError as exc:
            raise InputError(f"{label}: {exc}") from exc

    a = local(ws.inputs_a, "person A (--a)")
    b = local(ws.inputs_b, "person B (--b)")
    target = local([ws.target], "target (--target)")[0] if ws.target else None
    if target is not None and (target.is_dir() or classify(target) != "video"):
        raise InputError("target (--target): must be a video file", target)
    cfg = ws.extract_config()
    jobs: list[tuple[str, list[Path], Path, ExtractConfig]] = [
        ("person A (--a)", a + ([target] if target else []), ws.faceset_a, cfg),
        ("person B (--b)", b, ws.faceset_b, cfg),
    ]
    if target is not None:
        jobs.append(("target (--target)", [target], ws.faceset_target, ws.target_extract_config()))
    elif ws.faceset_target.exists():
        shutil.rmtree(ws.faceset_target)
    outcome = _Outcome()
    counts: dict[str, int] = {}
    for j, (label, inputs, out, config) in enumerate(jobs):
        run.check_cancel()
        try:
            sources = [str(s.path) for s in collect_sources(inputs)]
            _prepare_faceset(out, inputs, config)
            position = {p: i for i, p in enumerate(sources)}

            def on_frames(
                path: str,
                done: int,
                total: int,
                j: int = j,
                label: str = label,
                position: dict[str, int] = position,
            ) -> None:
                k = position.get(path, 0)
                part = (k + min(1.0, done / max(total, 1))) / max(len(position), 1)
                run.report("extract", (j + part) / len(jobs), f"{label}: {Path(path).name} {done}/{total}")

            result = extract(inputs, out, config, progress=on_frames, cancel=run.cancel)
        except InputError as exc:
            raise InputError(f"{label}: {exc}") from exc
        outcome.warnings += [f"{label}: {w}" for w in result.warnings]
        counts[out.name] = sum(s.faces for s in result.sources)
    outcome.extra = {"faces": counts}
    return outcome


def _stage_analyze(run: _Run) -> _Outcome:
    from faceloom.analysis.analyze import analyze

    ws = run.ws

    def on_progress(label: str, done: int, total: int) -> None:
        run.report("analyze", done / max(total, 1), label)

    analysis, _ = analyze(
        ws.faceset_a,
        ws.faceset_b,
        ws.analysis_dir,
        ws.faceset_target if ws.target else None,
        mirror_b=ws.train_config().flip_b,
        extract_config=ws.extract_config(),
        progress=on_progress,
    )
    report = analysis.report
    return _Outcome(
        warnings=[f"analysis: {w['message']}" for w in report["warnings"]],
        extra={"uncovered": report["uncovered"], "advice": report["advice"]},
    )


class _Plateau:
    """Says when the held-out score (mean masked SSIM of both sides) has stopped improving."""

    def __init__(self, config: EarlyStopConfig) -> None:
        self.config = config
        self.best = -math.inf
        self.bad = 0
        self.last_step = -1
        self.stopped = False

    def update(self, step: int, holdout: dict[str, float], eval_every: int) -> bool:
        due = bool(eval_every) and step % eval_every == 0 and step != self.last_step
        if not self.config.patience or not holdout or not due:
            return False
        self.last_step = step
        score = sum(holdout.values()) / len(holdout)
        if score > self.best + self.config.min_delta:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
        self.stopped = self.bad >= self.config.patience
        return self.stopped


def _stage_train(run: _Run) -> _Outcome:
    from faceloom.train.modeldir import ModelDir
    from faceloom.train.trainer import StepReport, train

    ws = run.ws
    tc, es = ws.train_config(), ws.early_stop()
    if tc.iterations is None and tc.minutes is None and not es.patience:
        raise InputError("no stop rule for training: set --iterations, --minutes or train.patience > 0")
    shape = ws._train_shape()
    prior = ws.read_state()["stages"].get("train", {}).get("extra", {})
    resume = ModelDir.exists(ws.model_dir) and prior.get("shape") == shape
    if not resume and ws.model_dir.exists():
        shutil.rmtree(ws.model_dir)
    run.extra = {"shape": shape, "train_seconds": float(prior.get("train_seconds", 0.0)) if resume else 0.0}
    previous = ws.read_state()["stages"].get("train", {})
    ws._write_stage("train", _running_record(run.extra, previous))
    base_s = run.extra["train_seconds"]
    step0 = ModelDir.load(ws.model_dir).step if resume else 0
    left_iters = tc.iterations - step0 if tc.iterations is not None else None
    left_minutes = tc.minutes - base_s / 60.0 if tc.minutes is not None else None
    if (left_iters is not None and left_iters <= 0) or (left_minutes is not None and left_minutes <= 0):
        rule = "iterations" if left_iters is not None and left_iters <= 0 else "minutes"
        return _Outcome(extra={**prior, **run.extra, "step": step0, "stopped_by": rule})
    if left_iters is None and left_minutes is None:
        left_minutes = NO_STOP_RULE_MINUTES
    config = replace(tc, iterations=left_iters, minutes=left_minutes)
    stop = threading.Event()
    plateau = _Plateau(es)
    saved_at = [time.monotonic()]

    def on_step(r: StepReport) -> None:
        run.extra["train_seconds"] = base_s + r.elapsed_s
        if plateau.update(r.step, r.holdout, tc.eval_every) or run.cancel.is_set():
            stop.set()
        parts = []
        if tc.iterations:
            parts.append(r.step / tc.iterations)
        if tc.minutes:
            parts.append(run.extra["train_seconds"] / (tc.minutes * 60.0))
        losses = " ".join(f"{k} {v:.4f}" for k, v in r.losses.items() if k in ("loss_a", "loss_b"))
        run.report("train", max(parts, default=0.0), f"step {r.step} {losses} {r.faces_per_s:.0f} faces/s")
        if time.monotonic() - saved_at[0] >= STATE_SAVE_EVERY_S:
            saved_at[0] = time.monotonic()
            ws._write_stage("train", _running_record(run.extra, previous))

    result = train(
        ws.faceset_a, ws.faceset_b, ws.model_dir, config, resume=resume, progress=on_step, cancel=stop
    )
    run.extra["train_seconds"] = base_s + result.seconds
    stopped_by = "plateau" if plateau.stopped else result.stopped_by
    if stopped_by == "cancelled":
        raise _Cancelled
    run.extra.update(
        step=result.step,
        stopped_by=stopped_by,
        holdout={k: round(v, 4) for k, v in result.holdout.items()},
        losses={k: round(v, 5) for k, v in result.losses.items() if k.startswith("loss_")},
        faces_per_s=round(result.faces_per_s, 1),
    )
    return _Outcome(warnings=[f"train: {w}" for w in result.warnings], extra=dict(run.extra))


def _stage_convert(run: _Run) -> _Outcome:
    from faceloom.convert.pipeline import convert
    from faceloom.faces.faceset import Faceset

    ws = run.ws
    assert ws.target is not None
    target = run.local(ws.target, "convert")
    cc = ws.convert_config()
    jobs = [(ws.output_video, replace(cc, side_by_side=False))]
    if cc.side_by_side:
        jobs.append((ws.side_by_side_video, replace(cc, side_by_side=True)))
    elif ws.side_by_side_video.exists():
        ws.side_by_side_video.unlink()
    faceset = ws.faceset_target if Faceset.is_faceset(ws.faceset_target) else None
    ensure_dir(ws.output_video.parent)
    outcome = _Outcome()
    for j, (final, config) in enumerate(jobs):
        run.check_cancel()
        partial = final.with_name(f".partial-{final.name}")

        def on_frames(done: int, total: int, j: int = j, name: str = final.name) -> None:
            run.report("convert", (j + done / max(total, 1)) / len(jobs), f"{name}: frame {done}/{total}")

        result = convert(
            target,
            ws.model_dir,
            partial,
            config,
            faceset=faceset,
            overwrite=True,
            progress=on_frames,
            cancel=run.cancel,
        )
        os.replace(partial, final)
        outcome.warnings += [
            f"convert: {w}" for w in result.warnings if f"convert: {w}" not in outcome.warnings
        ]
        if j == 0:
            outcome.extra = {
                "frames": result.frames,
                "frames_with_swaps": result.frames_with_swaps,
                "faces_swapped": result.faces_swapped,
                "faces_left_alone": result.faces_left_alone,
                "audio": result.audio,
            }
    return outcome


def _stage_eval(run: _Run) -> _Outcome:
    from faceloom.analysis.evaluation import evaluate
    from faceloom.analysis.flicker import video_flicker
    from faceloom.provenance import verify

    ws = run.ws
    ec = ws.eval_config()
    cache_path = ws.eval_json.parent / "model_eval.json"
    key = ws._eval_model_key()
    cached = _read_json(cache_path)
    if cached is not None and cached.get("key") == key:
        result = copy.deepcopy(cached["result"])
    else:
        run.report("eval", 0.05, "scoring the model on held-out faces")
        result = evaluate(ws.model_dir, ws.faceset_a, ws.faceset_b, config=ec)
        ensure_dir(cache_path.parent)
        atomic_write_text(cache_path, json.dumps({"key": key, "result": result}, default=str))
    run.check_cancel()
    if ws.target and ws.output_video.is_file():
        run.report("eval", 0.6, "measuring flicker of the swapped video")
        source = run.local(ws.target, "eval")

        def on_frames(label: str, done: int, total: int) -> None:
            run.report("eval", 0.6 + 0.35 * done / max(total, 1), f"flicker: frame {done}/{total}")

        video = video_flicker(ws.output_video, source, ec.detector, on_frames)
        result["warnings"] = list(result.get("warnings", [])) + list(video.pop("warnings", []))
        result["video"] = video
        result["provenance"] = {
            p.name: verify(p).to_dict() for p in (ws.output_video, ws.side_by_side_video) if p.is_file()
        }
    atomic_write_text(ws.eval_json, json.dumps(result, indent=1, default=str))
    return _Outcome(warnings=[f"eval: {w}" for w in result.get("warnings", [])])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _running_record(extra: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stage's record while it runs; keeps the time of its last successful run."""
    last = {k: v for k, v in (previous or {}).items() if k in ("seconds", "finished")}
    return {"state": "running", "pid": os.getpid(), "started": _now(), **last, "extra": extra}


STAGE_FUNCTIONS: dict[str, Callable[[_Run], _Outcome]] = {
    "extract": _stage_extract,
    "analyze": _stage_analyze,
    "train": _stage_train,
    "convert": _stage_convert,
    "eval": _stage_eval,
}


def _run_stage(run: _Run, stage: str, previous: dict[str, Any]) -> tuple[float, _Outcome]:
    """Run one stage, recording running / done / failed in state.json. Returns (seconds, outcome)."""
    ws = run.ws
    fp = ws.stage_fingerprint(stage)
    run.extra = dict(previous.get("extra", {})) if stage == "train" else {}
    ws._write_stage(stage, _running_record(run.extra, previous))
    run.report(stage, 0.0, "started")
    t0 = time.monotonic()
    try:
        outcome = STAGE_FUNCTIONS[stage](run)
        if run.cancel.is_set():
            raise _Cancelled
    except BaseException as exc:
        from faceloom.pipeline import Cancelled

        interrupted = isinstance(exc, KeyboardInterrupt)
        cancelled = isinstance(exc, _Cancelled | Cancelled) or (run.cancel.is_set() and not interrupted)
        error = "cancelled" if cancelled else "interrupted" if interrupted else _one_line(exc)
        failed = {**previous, "state": "failed", "error": error, "failed_at": _now(), "extra": run.extra}
        ws._write_stage(stage, failed)
        if cancelled:
            raise _Cancelled from exc
        raise
    seconds = time.monotonic() - t0
    record = {
        "state": "done",
        "fingerprint": fp,
        "seconds": round(seconds, 2),
        "finished": _now(),
        "warnings": outcome.warnings,
        "extra": outcome.extra,
    }
    ws._write_stage(stage, record)
    run.finish(stage, f"done in {seconds:.1f} s")
    return seconds, outcome


def run_workspace(
    ws: Workspace,
    *,
    only: list[str] | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    force: bool = False,
) -> RunSummary:
    """Run the stages of ``ws`` that are not up to date, in order, holding the workspace's lock.

    Args:
        only: run just these stages (each needs the stages it reads to be up to date).
        strict: stop before training when the analysis warns (also ``analyze.strict``).
        progress: see :data:`ProgressFn`.
        cancel: set it to stop at the next safe point; the summary then has ``cancelled`` set and
            the stage that was running is recorded as failed ("cancelled"); training keeps its last
            checkpoint and the next run resumes it.
        force: run the chosen stages even when they are up to date.

    Raises:
        WorkspaceBusy: another run holds the lock. InputError / OutputError / FormatError: a stage
        failed (recorded in state.json; finished stages are kept). StrictWarnings (exit code 1).
    """
    wanted = list(only) if only else list(STAGES)
    for stage in wanted:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    run = _Run(ws, progress, cancel or threading.Event())
    summary = RunSummary([], [], {}, None, None, None, None, [])
    with ws.lock():
        ws.reload()
        for stage in STAGES:
            if stage not in wanted:
                continue
            status = ws._status(holder=None)
            for up in ws.upstream(stage):
                if up not in wanted and status[up].state != "done":
                    raise FaceloomError(
                        f"cannot run {stage}: {up} is {status[up].state}; run it first (leave out --only)"
                    )
            if stage in ("convert",) and not ws.target:
                summary.skipped.append(stage)
                summary.warnings.append("no target video: nothing to convert (give --target VIDEO)")
                run.finish(stage, "skipped: no target video")
                continue
            if status[stage].state == "done" and not force:
                summary.skipped.append(stage)
                run.finish(stage, "up to date, skipped")
            else:
                previous = ws.read_state()["stages"].get(stage, {})
                try:
                    seconds, outcome = _run_stage(run, stage, previous)
                except _Cancelled:
                    summary.cancelled = True
                    break
                summary.ran.append(stage)
                summary.seconds[stage] = round(seconds, 2)
                summary.warnings += outcome.warnings
                summary.details[stage] = outcome.extra
            if stage == "analyze" and (strict or ws.analyze_config().strict):
                warned = ws.read_state()["stages"].get("analyze", {}).get("warnings", [])
                if warned:
                    raise StrictWarnings(
                        f"the analysis found {len(warned)} problem(s) and strict mode is on; "
                        f"see {ws.report_html} (finished stages are kept)"
                    )
    _fill_outputs(ws, summary)
    return summary


def _fill_outputs(ws: Workspace, summary: RunSummary) -> None:
    status = ws._status(holder=None)
    if status["convert"].state == "done":
        summary.output = ws.output_video
        if ws.convert_config().side_by_side and ws.side_by_side_video.is_file():
            summary.side_by_side = ws.side_by_side_video
    if ws.report_html.is_file():
        summary.report = ws.report_html
    if status["eval"].state == "done":
        summary.eval = _read_json(ws.eval_json)


__all__ = [
    "STAGES",
    "RunSummary",
    "StageState",
    "StageStatus",
    "StrictWarnings",
    "Workspace",
    "WorkspaceBusy",
    "run_workspace",
]
