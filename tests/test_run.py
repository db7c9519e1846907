"""`faceloom run` and `faceloom demo`: the workspace, its settings file, skipping, resuming, URL
inputs and bad input. The end-to-end tests share one workspace (A = GRID speaker g3 with his other
clip as the target, fetched over HTTP from 127.0.0.1; B = the CREMA-D actor) and run in file order.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceloom.cli.run import expand_many_values
from faceloom.errors import FormatError, InputError, OutputError
from faceloom.workspace import STAGE_NAMES as STAGES
from faceloom.workspace import Workspace, dump_toml, normalize_section, run_workspace
from faceloom.workspace.demo import split_reenactment
from faceloom.workspace.fetch import fetch
from tests.media_helpers import write_video

ITERATIONS = 30
TINY = ["--set", "extract.every_n=3", "--set", "eval.max_faces=16"]


def _faceloom(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-3000:]
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line a failed command printed (stderr may also hold warnings and bars)."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


# ---- a local HTTP server ----------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/short.mp4":  # promises more bytes than it sends
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder) of an HTTP server on 127.0.0.1 in a thread."""
    root = tmp_path_factory.mktemp("served")
    from tests.conftest import data_dir

    data = data_dir()
    if data is not None:
        (root / "grid").symlink_to(data / "grid")
    (root / "page.html").write_text("<html><body>a page with a video</body></html>")
    (root / "clip.mp4").write_bytes(os.urandom(3000))
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


# ---- units: settings file, values, demo roles, argument expansion ------------------------------


def test_toml_writer_round_trips_through_tomllib() -> None:
    settings: dict[str, dict[str, Any]] = {
        "inputs": {"a": ['C:\\clips\\a "b".mp4', "ünï cødé\ttab", "line\nbreak"], "target": "x\x01y"},
        "train": {"iterations": 30, "minutes": 1.5, "tiny": 1e-05, "gan": False, "init_from": None},
    }
    parsed = tomllib.loads(dump_toml(settings, {"train": "a note"}))
    assert parsed["inputs"] == settings["inputs"]
    assert parsed["train"] == {"iterations": 30, "minutes": 1.5, "tiny": 1e-05, "gan": False}


def test_settings_are_typed_and_validated_by_the_stage_configs() -> None:
    convert = normalize_section("convert", {"color": "hist", "crf": "20", "side_by_side": "no"})
    assert (convert["color"], convert["crf"], convert["side_by_side"], convert["blend"]) == (
        "hist",
        20,
        False,
        "alpha",
    )
    train = normalize_section("train", {"iterations": "none", "minutes": "2", "patience": 0})
    assert train["iterations"] is None and train["minutes"] == 2.0 and train["patience"] == 0
    assert normalize_section("extract", {"identity_refs": "a.jpg, b.jpg"})["identity_refs"] == [
        "a.jpg",
        "b.jpg",
    ]
    with pytest.raises(ValueError, match=r"unknown setting convert\.colour"):
        normalize_section("convert", {"colour": "hist"})
    with pytest.raises(ValueError, match="must be one of"):
        normalize_section("convert", {"color": "sepia"})
    with pytest.raises(ValueError, match=r"extract\.every_n must be at least 1"):
        normalize_section("extract", {"every_n": 0})
    with pytest.raises(ValueError, match="unknown settings section"):
        normalize_section("paint", {})


def test_demo_roles_angry_disgusted_fearful_clips_play_a() -> None:
    names = [f"1001_DFA_{e}_XX.flv" for e in ("SAD", "ANG", "HAP", "FEA", "NEU", "DIS")]
    roles = split_reenactment([Path("/cache") / n for n in names])
    assert [Path(p).name for p in roles.a] == [
        "1001_DFA_ANG_XX.flv",
        "1001_DFA_DIS_XX.flv",
        "1001_DFA_FEA_XX.flv",
    ]
    assert [Path(p).name for p in roles.b] == [
        "1001_DFA_HAP_XX.flv",
        "1001_DFA_NEU_XX.flv",
        "1001_DFA_SAD_XX.flv",
    ]
    assert Path(roles.target).name == "1001_DFA_ANG_XX.flv" and roles.reenactment
    with pytest.raises(InputError):
        split_reenactment([Path("1001_DFA_HAP_XX.flv")])


def test_options_take_several_values_after_one_flag() -> None:
    args = ["--a", "x.mp4", "y", "--b", "z", "--workspace", "w", "--set", "a.b=1", "c.d=2", "--json"]
    assert expand_many_values(args) == [
        *("--a", "x.mp4", "--a", "y", "--b", "z", "--workspace", "w"),
        *("--set", "a.b=1", "--set", "c.d=2", "--json"),
    ]


# ---- units: the workspace folder --------------------------------------------------------------


def _dummy_inputs(tmp_path: Path) -> tuple[list[str], list[str], str]:
    for name in ("a.mp4", "b.mp4", "t.mp4"):
        (tmp_path / name).write_bytes(b"")
    return [str(tmp_path / "a.mp4")], [str(tmp_path / "b.mp4")], str(tmp_path / "t.mp4")


def test_workspace_create_open_edit_and_status(tmp_path: Path) -> None:
    a, b, t = _dummy_inputs(tmp_path)
    ws = Workspace.create(tmp_path / "ws", a, b, t, iterations=5, side_by_side=False)
    assert Workspace.is_workspace(ws.root)
    again = Workspace.open(ws.root)
    assert again.settings == ws.settings
    # One rule for defaults: a new workspace takes faceloom.config's (the model: loom, as for train).
    assert again.train_config().iterations == 5 and again.train_config().model == "loom"
    assert not again.convert_config().side_by_side
    assert {k: v.state for k, v in again.status().items()} == dict.fromkeys(STAGES, "pending")
    again.update_settings("convert", {"color": "lct"})
    assert Workspace.open(ws.root).convert_config().color == "lct"
    with pytest.raises(ValueError):
        again.update_settings("convert", {"crf": 99})
    again.set_inputs(b=["http://127.0.0.1:9/b.mp4"])
    assert Workspace.open(ws.root).inputs_b == ["http://127.0.0.1:9/b.mp4"]
    assert (ws.output_video, ws.side_by_side_video, ws.eval_json) == (
        ws.root / "output" / "swapped.mp4",
        ws.root / "output" / "side_by_side.mp4",
        ws.root / "eval" / "eval.json",
    )
    with pytest.raises(OutputError, match="not empty"):
        Workspace.create(tmp_path, a, b, t)
    with pytest.raises(OutputError, match="already"):
        Workspace.create(ws.root, a, b, t)
    with pytest.raises(InputError, match="no such file"):
        Workspace.create(tmp_path / "ws2", [str(tmp_path / "missing.mp4")], b, t)
    with pytest.raises(InputError, match="unsupported URL scheme"):
        Workspace.create(tmp_path / "ws3", ["ftp://example.org/a.mp4"], b, t)
    with pytest.raises(FormatError, match="not a faceloom workspace"):
        Workspace.open(tmp_path)


def test_a_workspace_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "faceloom.toml").write_text('[workspace]\nversion = 99\ncreated_by = "faceloom 9.0"\n')
    done = _faceloom("run", "--workspace", ws)
    assert done.returncode == 2
    assert "newer faceloom" in _error_line(done)


def test_a_second_run_on_a_workspace_in_use_is_refused(tmp_path: Path) -> None:
    a, b, t = _dummy_inputs(tmp_path)
    ws = Workspace.create(tmp_path / "ws", a, b, t)
    with ws.lock():
        done = _faceloom("run", "--workspace", ws.root)
        assert done.returncode == 2
        assert _error_line(done) == (
            f"error: workspace {ws.root} is in use by another faceloom run (pid {os.getpid()}); "
            "wait for it to finish or stop it"
        )
        assert ws.lock_holder() == os.getpid()
    assert ws.lock_holder() is None


def test_a_cancelled_run_returns_a_summary_and_records_the_stage(tmp_path: Path) -> None:
    a, b, t = _dummy_inputs(tmp_path)
    ws = Workspace.create(tmp_path / "ws", a, b, t, iterations=5)
    cancel = threading.Event()
    cancel.set()
    seen: list[tuple[str, float, str]] = []
    summary = run_workspace(ws, cancel=cancel, progress=lambda p: seen.append((p.task, p.done, p.message)))
    assert summary.cancelled and summary.ran == [] and summary.output is None
    assert seen[0] == ("extract", 0.0, "started")
    status = ws.status()
    assert status["extract"].state == "failed" and status["extract"].error == "cancelled"
    assert ws.lock_holder() is None


def test_demo_wants_both_people(tmp_path: Path) -> None:
    done = _faceloom("demo", "--a", tmp_path, "--workspace", tmp_path / "ws")
    assert done.returncode == 2 and "--a and --b go together" in _error_line(done)


# ---- URL inputs -------------------------------------------------------------------------------


def test_fetch_downloads_once_and_explains_failures(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    seen: list[tuple[float, float | None]] = []
    got = fetch(f"{url}/clip.mp4", tmp_path, progress=lambda p: seen.append((p.done, p.total)))
    assert got.read_bytes() == (root / "clip.mp4").read_bytes() and got.suffix == ".mp4"
    assert seen[-1] == (3000, 3000)
    assert [p.name for p in tmp_path.iterdir()] == [got.name]  # no temporary file left
    assert fetch(f"{url}/clip.mp4", tmp_path, progress=lambda p: seen.append((p.done, p.total))) == got
    assert len(seen) == 1  # the second fetch reused the file
    with pytest.raises(InputError, match="HTTP 404"):
        fetch(f"{url}/missing.mp4", tmp_path)
    with pytest.raises(InputError, match="broke off after 10 of 1000 bytes"):
        fetch(f"{url}/short.mp4", tmp_path)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(InputError, match="is a web page; install yt-dlp to fetch videos from pages"):
        fetch(f"{url}/page.html", tmp_path)
    with pytest.raises(InputError, match="download failed"):
        fetch("http://127.0.0.1:9/nothing-listens-here.mp4", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [got.name]


def test_a_failing_url_stops_the_run_with_exit_code_2(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    ws = tmp_path / "ws"
    done = _faceloom("run", "--a", f"{url}/missing.mp4", "--b", root / "clip.mp4", "--workspace", ws)
    assert done.returncode == 2
    line = _error_line(done)
    assert "person A (--a)" in line and "HTTP 404" in line and "missing.mp4" in line
    status = Workspace.open(ws).status()
    assert status["extract"].state == "failed" and "HTTP 404" in (status["extract"].error or "")


# ---- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain(
    server: tuple[str, Path], grid: dict[str, Path], data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """One workspace run through every stage: A = g3, target = g3's other clip by URL, B = CREMA-D."""
    url, _ = server
    ws = tmp_path_factory.mktemp("run") / "ws"
    target = f"{url}/grid/{grid['g3b'].name}"
    first = _json(
        _faceloom(
            *("run", "--a", grid["g3"], "--b", data / "crema-d", "--target", target, "--workspace", ws),
            *("--model", "lite", "--side-by-side", "--iterations", str(ITERATIONS), *TINY, "--json"),
        )
    )
    return ws, first


@pytest.mark.slow
def test_run_makes_every_stage_and_a_labelled_swap_with_audio(chain: tuple[Path, dict[str, Any]]) -> None:
    root, summary = chain
    assert summary["ran"] == list(STAGES) and summary["skipped"] == []
    assert set(summary["seconds"]) == set(STAGES)
    ws = Workspace.open(root)
    assert summary["output"] == str(ws.output_video) and ws.output_video.is_file()
    assert summary["side_by_side"] == str(ws.side_by_side_video) and ws.side_by_side_video.is_file()
    assert (
        summary["report"] == str(ws.analysis_dir / "report.html")
        and (ws.analysis_dir / "coverage.json").is_file()
    )
    assert [p.name.endswith("pwij3p.mpg") for p in ws.inputs_dir.iterdir()] == [
        True
    ]  # the target came by URL
    assert summary["details"]["train"]["step"] == ITERATIONS
    assert summary["details"]["convert"]["audio"] and summary["details"]["convert"]["faces_swapped"] > 0
    result = json.loads(ws.eval_json.read_text())
    assert result == summary["eval"]
    assert set(result["reconstruction"]) == {"a", "b"} and result["video"]["frames"] > 0
    assert result["provenance"]["swapped.mp4"]["synthetic"]
    assert result["provenance"]["swapped.mp4"]["c2pa"]["validation_state"] == "Valid"
    assert result["provenance"]["side_by_side.mp4"]["watermark"]["found"]
    settings = tomllib.loads((root / "faceloom.toml").read_text())
    assert settings["extract"]["every_n"] == 3 and settings["train"]["iterations"] == ITERATIONS
    assert settings["inputs"]["target"].startswith("http://127.0.0.1:")
    assert all(s["state"] == "done" for s in summary["status"].values())


@pytest.mark.slow
def test_a_second_run_skips_every_stage(chain: tuple[Path, dict[str, Any]]) -> None:
    root, _ = chain
    again = _json(_faceloom("run", "--workspace", root, "--json"))
    assert again["ran"] == [] and again["skipped"] == list(STAGES)
    assert again["output"] and Path(again["output"]).is_file()


@pytest.mark.slow
def test_strict_stops_before_training_when_the_analysis_warns(chain: tuple[Path, dict[str, Any]]) -> None:
    root, summary = chain
    assert any(w.startswith("analysis: ") for w in summary["warnings"])  # few faces: A and B are small
    strict = _faceloom("run", "--workspace", root, "--strict")
    assert strict.returncode == 1
    assert "strict mode is on" in _error_line(strict)
    assert Workspace.open(root).status()["train"].state == "done"  # nothing was undone


@pytest.mark.slow
def test_a_changed_convert_setting_redoes_convert_and_the_scores_of_its_video(
    chain: tuple[Path, dict[str, Any]],
) -> None:
    root, _ = chain
    ws = Workspace.open(root)
    before = ws.output_video.stat().st_mtime_ns
    changed = _json(_faceloom("run", "--workspace", root, "--set", "convert.color=hist", "--json"))
    # eval measures the converted video (flicker, label), so it follows convert; the model's own
    # scores are reused from eval/model_eval.json.
    assert changed["ran"] == ["convert", "eval"]
    assert changed["skipped"] == ["extract", "analyze", "train"]
    assert ws.output_video.stat().st_mtime_ns != before
    assert Workspace.open(root).convert_config().color == "hist"
    assert changed["status"]["convert"]["state"] == "done"


def _train_record(root: Path) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads((root / "state.json").read_text())["stages"].get("train", {})
    except (OSError, json.JSONDecodeError):
        return {}
    return record


def _model_step(root: Path) -> int:
    try:
        return int(json.loads((root / "model" / "model.json").read_text())["step"])
    except (OSError, json.JSONDecodeError, KeyError):
        return -1


@pytest.mark.slow
def test_a_run_killed_during_training_resumes_to_completion(chain: tuple[Path, dict[str, Any]]) -> None:
    root, _ = chain
    total = ITERATIONS + 50
    cmd = [sys.executable, "-m", "faceloom", "run", "--workspace", str(root), "--iterations", str(total)]
    proc = subprocess.Popen(
        [*cmd, "--set", "train.save_every=10"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while _model_step(root) < ITERATIONS + 10 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "training finished before it could be killed"
        assert _train_record(root).get("state") == "running"
        busy = _faceloom("run", "--workspace", root)
        assert busy.returncode == 2
        assert _error_line(busy).startswith(
            f"error: workspace {root} is in use by another faceloom run (pid {proc.pid})"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = _model_step(root)
    assert ITERATIONS + 10 <= killed_at < total
    status = Workspace.open(root).status()
    assert status["train"].state == "failed" and "interrupted" in (status["train"].error or "")
    assert status["extract"].state == "done" and status["convert"].state == "stale"

    resumed = _json(_faceloom("run", "--workspace", root, "--json"))
    assert resumed["ran"] == ["train", "convert", "eval"]
    assert resumed["details"]["train"]["step"] == total
    assert resumed["eval"]["model"]["step"] == total
    log_steps = [
        int(line.split(",")[0]) for line in (root / "model" / "log.csv").read_text().splitlines()[1:]
    ]
    assert log_steps == sorted(set(log_steps)) and log_steps[-1] == total  # one row per step logged
    assert all(s["state"] == "done" for s in resumed["status"].values())


def _faceless_clip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = [np.full((144, 176, 3), 90, np.uint8) + rng.integers(0, 20, (144, 176, 3), dtype=np.uint8)] * 12
    return write_video(path, frames)


@pytest.mark.slow
def test_a_person_or_target_without_faces_is_a_clear_error(grid: dict[str, Path], tmp_path: Path) -> None:
    blank = _faceless_clip(tmp_path / "blank.mp4")
    ws = tmp_path / "ws"
    no_b = _faceloom(
        *("run", "--a", grid["g1"], "--b", blank, "--target", grid["g1"], "--workspace", ws),
        *("--model", "lite", "--iterations", "5", "--set", "extract.every_n=3"),
    )
    assert no_b.returncode == 2
    line = _error_line(no_b)
    assert "person B (--b)" in line and "no face found" in line and "blank.mp4" in line
    assert (ws / "facesets" / "a" / "faceset.json").is_file()  # A's finished faces are kept

    no_target = _faceloom("run", "--b", grid["g2"], "--target", blank, "--workspace", ws)
    assert no_target.returncode == 2
    line = _error_line(no_target)
    assert "target (--target)" in line and "no face found" in line
    status = Workspace.open(ws).status()
    assert status["extract"].state == "failed" and status["train"].state == "pending"


@pytest.mark.slow
def test_demo_on_two_peoples_clips_prints_paths_that_exist(
    grid: dict[str, Path], data: Path, tmp_path: Path
) -> None:
    a_dir = tmp_path / "g3"
    a_dir.mkdir()
    for key in ("g3", "g3b"):
        (a_dir / grid[key].name).symlink_to(grid[key])
    done = _faceloom(
        *("demo", "--a", a_dir, "--b", data / "crema-d", "--workspace", tmp_path / "demo"),
        *("--iterations", "10"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in done.stdout.splitlines()
        if line.startswith(("swapped video:", "side-by-side video:", "coverage report:", "eval numbers:"))
    }
    assert len(shown) == 4 and all(Path(p).is_file() for p in shown.values()), done.stdout
    settings = Workspace.open(tmp_path / "demo").settings
    assert settings["train"]["model"] == "lite" and settings["train"]["iterations"] == 10
    assert settings["inputs"]["target"].endswith(grid["g3"].name)  # A's first clip
