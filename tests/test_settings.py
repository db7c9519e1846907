"""Settings that declare themselves, and a trained model that no setting can delete.

- Every setting of every stage carries its metadata; the CLI options, faceloom.toml (and its
  comments, kept across rewrites), validation messages (by key in the library, by flag in the CLI)
  and the trainer's resume rule derive from it.
- For every field of TrainConfig, changing it in a workspace either continues the trained model
  (more steps, the same ``created``) or keeps the old model on disk (``model.prev-...``). The test
  enumerates the fields, so a new field cannot be forgotten.
- Sources are known by content: a moved or renamed video is still the one a faceset holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from faceloom.config import ConvertConfig, ExtractConfig, TrainConfig
from faceloom.config.meta import SettingError, SettingInfo, Settings, settings_of
from faceloom.workspace import Workspace, run_workspace
from faceloom.workspace.settings_file import section_classes


def _faceloom(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}  # --help tables in full width, no cut flag names
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def _all_settings_classes() -> list[type[Settings]]:
    return sorted({c for classes in section_classes().values() for c in classes}, key=lambda c: c.__name__)


# ---- metadata -----------------------------------------------------------------------------------


def test_every_setting_declares_help_and_its_choices_come_from_its_type() -> None:
    for cls in _all_settings_classes():
        infos = settings_of(cls)
        assert infos, cls
        for info in infos:
            assert info.meta.help.strip(), info.key
            if typing.get_origin(info.inner) is typing.Literal:
                assert info.choices == typing.get_args(info.inner)
                assert all(str(c) in info.describe() for c in info.choices)
            cls(**{info.name: info.default})  # the declared default passes the declared checks
    assert {i.name for i in settings_of(TrainConfig) if i.meta.shapes_model} == {
        "model",
        "crop",
        "resolution",
        "seed",
        "holdout_share",
        "init_from",
    }


def test_library_messages_name_the_setting_and_the_cli_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"^extract\.size must be between 64 and 2048, got 10$"):
        ExtractConfig(size=10)
    with pytest.raises(SettingError, match=r"^convert\.end \(1\.0\) must be after start \(2\.0\)$"):
        ConvertConfig(start=2.0, end=1.0)
    done = _faceloom("extract", tmp_path / "none.mp4", "--out", tmp_path / "fs", "--size", "10")
    assert done.returncode == 2
    assert _error_line(done) == "error: --size must be between 64 and 2048, got 10"
    done = _faceloom("train", "--out", tmp_path / "m", "--lr", "-1")
    assert done.returncode == 2
    assert _error_line(done) == "error: --learning-rate must be more than 0, got -1.0"


def test_cli_options_are_the_settings(tmp_path: Path) -> None:
    """Each command offers every setting of its stage under the flag its metadata names."""
    for command, cls in (("train", TrainConfig), ("convert", ConvertConfig), ("extract", ExtractConfig)):
        done = _faceloom(command, "--help")
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.split())
        for info in settings_of(cls):
            assert info.flag in text, f"{command} --help lacks {info.flag}"


def test_settings_file_keeps_comments_and_edits(tmp_path: Path) -> None:
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
    ws = Workspace.create(tmp_path / "ws", [str(tmp_path / "a.mp4")], [str(tmp_path / "b.mp4")], None)
    text = ws.settings_file.read_text()
    for info in settings_of(ExtractConfig):  # each setting under its help text
        assert info.meta.help.split(".")[0][:30] in text, info.key
    assert "# iterations is not set" in text
    edited = text.replace("[convert]", "# my own note about convert\n[convert]").replace(
        "color = ", "color = "
    )
    edited = edited.replace('color = "rct"', 'color = "rct"  # rct looked best on my clips')
    ws.settings_file.write_text(edited)
    again = Workspace.open(ws.root)
    again.update_settings("convert", {"crf": 20})
    again.update_settings("train", {"iterations": 7})
    text = ws.settings_file.read_text()
    assert "# my own note about convert" in text
    assert 'color = "rct"  # rct looked best on my clips' in text
    assert "crf = 20" in text and "iterations = 7" in text
    assert Workspace.open(ws.root).train_config().iterations == 7


# ---- never lose a trained model ---------------------------------------------------------------


def _other_value(info: SettingInfo, current: Any, kept_model: Path | None) -> Any:
    """A valid value different from ``current``, derived from the setting's type and range (an unset
    "architecture default" becomes a value near that default)."""
    from faceloom.train.models import get_model_class

    if info.name == "init_from":
        assert kept_model is not None, "init_from needs a trained lite model: one kept aside earlier"
        return str(kept_model)
    if info.name == "resolution":  # the other side the test's architecture offers
        return next(r for r in get_model_class("lite").resolutions if r != current)
    if info.choices is not None:
        safe = [c for c in info.choices if c not in ("cuda", "fp16", "bf16") and c != current]
        return "original" if info.name == "model" else safe[0]
    if info.is_bool:
        return not current
    if current is None:
        base = getattr(get_model_class("lite").train_defaults, info.name, None)
        if info.inner is int:
            return max(int(base or 0) // 2, 1)
        if base is not None:
            return float(base) * 0.5
        return 600.0  # minutes: far beyond the two steps each run trains
    if info.inner is int:
        return current + 1
    high = info.meta.high
    return current * 0.5 if high is not None and current * 2 + 0.01 >= high else current * 2 + 0.01


def _model(root: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((root / "model.json").read_text())
    return meta


@pytest.mark.slow
def test_changing_any_train_setting_continues_or_keeps_the_old_model(
    grid: dict[str, Path], tmp_path: Path
) -> None:
    ws = Workspace.create(
        tmp_path / "ws",
        [str(grid["g1"])],
        [str(grid["g2"])],
        None,
        settings={
            "extract": {"every_n": 2},
            "train": {
                "model": "lite",
                "iterations": 2,
                "batch_size": 2,  # the runs are about the settings, not the steps: keep them small
                "patience": 0,
                "save_every": 0,
                "preview_every": 0,
            },
        },
    )
    run_workspace(ws, only=["extract", "train"])
    fields = [i for i in settings_of(TrainConfig) if i.name != "model"]
    fields.append(next(i for i in settings_of(TrainConfig) if i.name == "model"))  # last: it is slow
    checked: list[str] = []
    kept: list[Path] = []
    for info in fields:
        before = _model(ws.model_dir)
        current = ws.train_config()
        value = _other_value(info, getattr(current, info.name), kept[-1] if kept else None)
        changes = {info.name: value}
        if info.name != "iterations":  # two more steps; a new model (the setting shapes it) trains two
            changes["iterations"] = 2 if info.meta.shapes_model else before["step"] + 2
        if info.name == "model":  # the big architecture: two small steps, no GAN, nothing saved between
            changes.update(
                batch_size=2,
                init_from=None,
                resolution=None,
                gan=False,
                snapshot_every=0,
                preview_every=0,
                save_every=0,
                threads=None,
            )
        ws.update_settings("train", changes)
        summary = run_workspace(ws, only=["train"])
        assert summary.ran == ["train"], f"changing {info.key} did not run training"
        after = _model(ws.model_dir)
        if info.meta.shapes_model:
            old = [p for p in ws.root.glob("model.prev-*") if p not in kept]
            assert len(old) == 1, f"{info.key}: the old model was not kept aside"
            kept.append(old[0])
            assert _model(old[0])["created"] == before["created"] and _model(old[0])["step"] == before["step"]
            assert (old[0] / before["checkpoint"] / "weights.safetensors").is_file()
            assert any(info.key in w and "kept the model" in w for w in summary.warnings), summary.warnings
            # a new model, made with the new value (two can be created in the same second)
            assert TrainConfig.from_dict(after["train"]).to_dict()[info.name] == value
            assert TrainConfig.from_dict(before["train"]).to_dict()[info.name] != value
        else:
            assert after["created"] == before["created"], f"{info.key}: a new model was started"
            assert after["step"] > before["step"], f"{info.key}: training did not continue"
            assert not [p for p in ws.root.glob("model.prev-*") if p not in kept]
            if not info.meta.per_run:  # the trainer gets the steps and minutes left, not the totals
                assert TrainConfig.from_dict(after["train"]).to_dict()[info.name] == value
        checked.append(info.name)
    assert sorted(checked) == sorted(i.name for i in settings_of(TrainConfig))
    assert len(kept) == sum(1 for i in settings_of(TrainConfig) if i.meta.shapes_model)
    assert sorted(ws.kept()["models"]) == sorted(kept)


@pytest.mark.slow
def test_train_resume_refuses_a_shaping_flag_and_takes_the_others(trained_lite: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    shutil.copytree(trained_lite, out)
    step = _model(out)["step"]
    refused = _faceloom("train", "--out", out, "--resume", "--model", "loom", "--iterations", "2")
    assert refused.returncode == 2
    line = _error_line(refused)
    assert line.startswith("error: --model shapes the model and cannot change on a trained one")
    assert "train into a new --out" in line
    assert _model(out)["step"] == step
    done = _faceloom(
        *("train", "--out", out, "--resume", "--no-warp", "--iterations", "2", "--preview-every", "0"),
        "--json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = _model(out)
    assert meta["step"] == step + 2 and meta["train"]["warp"] is False and meta["train"]["model"] == "lite"


# ---- sources known by content -----------------------------------------------------------------


@pytest.mark.slow
def test_a_moved_and_renamed_video_is_still_found_in_its_faceset(
    grid: dict[str, Path], g1_faceset: Path, trained_lite: Path, tmp_path: Path
) -> None:
    from faceloom.convert.pipeline import convert
    from faceloom.extract import extract
    from faceloom.faces.faceset import Faceset

    moved = tmp_path / "elsewhere" / "renamed_take.mpg"
    moved.parent.mkdir()
    shutil.copy(grid["g1"], moved)
    fs = Faceset.load(g1_faceset)
    key = fs.find_source(grid["g1"])
    assert key is not None and fs.find_source(moved) == key
    assert fs.find_source(grid["g2"]) is None
    swap_all = ConvertConfig(all_faces=True)  # g1 is neither person of the model: swap every face
    result = convert(moved, trained_lite, tmp_path / "out.mp4", swap_all, faceset=g1_faceset)
    assert result.frames > 0 and result.faces_swapped > 0
    again = extract([moved], g1_faceset)  # the renamed copy is not extracted a second time
    assert [s.skipped for s in again.sources] == [True]
