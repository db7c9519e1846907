"""Shared fixtures: where the real clips are, and facesets extracted once per test session."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from faceloom.config import ExtractConfig, TrainConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def config_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """faceloom's config folder (the local C2PA signing chain) in a temporary place, not ~/.config;
    commands started by the tests inherit it."""
    folder = tmp_path_factory.mktemp("config")
    os.environ["FACELOOM_CONFIG"] = str(folder)
    return folder


def data_dir() -> Path | None:
    """The real test clips: $FACELOOM_TEST_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("FACELOOM_TEST_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "grid").is_dir() and (path / "crema-d").is_dir() else None


@pytest.fixture(scope="session")
def data() -> Path:
    path = data_dir()
    if path is None:
        reason = (
            "real test clips not found: put ../shared/data beside the repository "
            "or set FACELOOM_TEST_DATA to a folder with grid/ and crema-d/"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def grid(data: Path) -> dict[str, Path]:
    """GRID clips by speaker: g1, g2, g3 (two clips: g3, g3b)."""
    g = data / "grid"
    return {
        "g1": g / "bbaf2n.mpg",
        "g2": g / "brbk7n.mpg",
        "g3": g / "id2_vcd_swwp2s.mpg",
        "g3b": g / "pwij3p.mpg",
    }


@pytest.fixture(scope="session")
def crema(data: Path) -> list[Path]:
    return sorted((data / "crema-d").glob("*.flv"))


@pytest.fixture(scope="session")
def g1_faceset(grid: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GRID speaker g1 extracted once with default settings (75 frames)."""
    from faceloom.extract import extract

    out = tmp_path_factory.mktemp("facesets") / "g1"
    extract([grid["g1"]], out)
    return out


LITE_STEPS = 300


@pytest.fixture(scope="session")
def pair(
    grid: dict[str, Path], crema: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A = GRID speaker g3 (two clips), B = the CREMA-D actor (six clips)."""
    from faceloom.extract import extract

    root = tmp_path_factory.mktemp("pair")
    extract([grid["g3"], grid["g3b"]], root / "a")
    extract(crema, root / "b", ExtractConfig(every_n=2))
    return root / "a", root / "b"


def lite_config(**kw: Any) -> TrainConfig:
    base = TrainConfig(model="lite", save_every=100, preview_every=100, log_every=10, eval_every=100)
    return replace(base, **kw)


@pytest.fixture(scope="session")
def trained_lite(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one small model of the test session, reused by the tests that need a trained model."""
    from faceloom.train.trainer import train

    out = tmp_path_factory.mktemp("models") / "lite"
    train(pair[0], pair[1], out, lite_config(iterations=LITE_STEPS))
    return out
