"""The real `faceloom` command: exit codes and one-line errors naming the file, --json output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_help_is_fast_and_lists_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert "extract" in proc.stdout and "faceset" in proc.stdout and "owners agreed" in proc.stdout


def test_extract_json_and_rerun_skips(grid: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fs"
    proc = run("extract", grid["g1"], "--out", out, "--every-n", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["faces"] == 15 and summary["sources"][0]["skipped"] is False
    assert set(summary["stage_share"]) == {"decode", "detect", "align+write"}
    assert "W0000" not in proc.stderr and "TensorFlow Lite" not in proc.stderr, "native log chatter leaked"
    again = run("-q", "extract", grid["g1"], "--out", out, "--every-n", "5")
    assert again.returncode == 0 and again.stdout == ""
    info = run("faceset", "info", out, "--json")
    assert json.loads(info.stdout)["counts"]["faces"] == 15


def test_bad_inputs_exit_2_with_one_line(grid: dict[str, Path], tmp_path: Path) -> None:
    missing = run("extract", tmp_path / "nope.mp4", "--out", tmp_path / "a")
    assert missing.returncode == 2 and "nope.mp4" in error_line(missing)

    corrupt = tmp_path / "corrupt.mpg"
    corrupt.write_bytes(np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    bad = run("extract", corrupt, "--out", tmp_path / "b")
    assert bad.returncode == 2 and "corrupt.mpg" in error_line(bad)

    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    blocked = run("extract", grid["g1"], "--out", not_dir / "fs")
    assert blocked.returncode == 2 and "file.txt" in error_line(blocked)

    fs = tmp_path / "old"
    assert run("extract", grid["g1"], "--out", fs, "--every-n", "25").returncode == 0
    header = json.loads((fs / "faceset.json").read_text())
    header["version"] = 99
    (fs / "faceset.json").write_text(json.dumps(header))
    newer = run("faceset", "info", fs)
    assert newer.returncode == 2 and "version 99" in error_line(newer)

    bad_opt = run("extract", grid["g1"], "--out", tmp_path / "c", "--every-n", "0")
    assert bad_opt.returncode == 2 and "--every-n" in error_line(bad_opt)
