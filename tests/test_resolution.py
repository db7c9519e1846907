"""The model's side picked from the footage's faces, and the warnings when a faceset holds too few
pixels for the side chosen, on real clips: GRID s4 at 720x576 (faces about 235 px) and g1 at
360x288."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faceloom.config import ExtractConfig, TrainConfig
from faceloom.extract import extract
from faceloom.faces.faceset import Faceset
from faceloom.train.models import get_model_class
from faceloom.train.resolution import (
    CPU_AUTO_SIDE,
    crop_detail,
    model_side,
    pick_resolution,
    resolution_warnings,
)
from faceloom.train.trainer import Trainer


@pytest.fixture(scope="module")
def hq_and_small(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resolution")
    s4 = sorted((data / "grid" / "s4_hq").glob("*.mpg"))[0]
    extract([s4], root / "s4_512", ExtractConfig(size=512, every_n=3))
    extract([s4], root / "s4_384", ExtractConfig(every_n=6))
    extract([data / "grid" / "bbaf2n.mpg"], root / "g1", ExtractConfig(size=512, every_n=3))
    return {"s4_512": root / "s4_512", "s4_384": root / "s4_384", "g1": root / "g1"}


def test_detail_of_the_faces_sets_the_side(hq_and_small: dict[str, Path]) -> None:
    offered = get_model_class("loom").resolutions
    s4 = crop_detail(Faceset.load(hq_and_small["s4_512"]), "whole_face")
    g1 = crop_detail(Faceset.load(hq_and_small["g1"]), "whole_face")
    assert 240 < s4.source < 330 and s4.stored > s4.source  # the frame limits: 512 px crops hold more
    assert 120 < g1.source < 180
    assert pick_resolution(offered, s4.px) == 256
    assert pick_resolution(offered, g1.px) == 128
    assert pick_resolution(offered, 50.0) == 128  # never below the smallest offered
    small_store = crop_detail(Faceset.load(hq_and_small["s4_384"]), "whole_face")
    assert small_store.stored == pytest.approx(384 * 1.7 / 2.6) and small_store.px == small_store.stored


def test_too_few_pixels_are_named_with_the_fix(hq_and_small: dict[str, Path]) -> None:
    stored = Faceset.load(hq_and_small["s4_384"])
    (line,) = resolution_warnings("A", stored, "whole_face", 320)
    assert (
        "stores whole_face crops of about 251 px" in line
        and "--size 512" in line
        and str(stored.root) in line
    )
    small = Faceset.load(hq_and_small["g1"])
    (line,) = resolution_warnings("B", small, "whole_face", 256)
    assert "in the footage, fewer than the model's 256" in line
    assert resolution_warnings("A", Faceset.load(hq_and_small["s4_512"]), "whole_face", 256) == []


def test_a_new_loom_takes_its_side_from_a_and_an_asked_side_wins(
    hq_and_small: dict[str, Path], tmp_path: Path
) -> None:
    a, b = hq_and_small["s4_512"], hq_and_small["g1"]
    loom = get_model_class("loom")
    assert model_side(loom, None, Faceset.load(a), "whole_face", "cuda") == (256, [])
    assert model_side(loom, None, Faceset.load(b), "whole_face", "cuda") == (128, [])
    side, why = model_side(loom, None, Faceset.load(a), "whole_face", "cpu")
    assert side == CPU_AUTO_SIDE and "enough for a 256 px model" in why[0] and "--resolution 256" in why[0]
    picked = Trainer(a, b, tmp_path / "auto", TrainConfig(iterations=1, device="cpu"))
    assert picked.model.resolution == 128 and any("--resolution 256" in w for w in picked.warnings)
    asked = Trainer(a, b, tmp_path / "asked", TrainConfig(iterations=1, resolution=256))
    assert asked.model.resolution == 256 and asked.mdir.meta["arch"]["resolution"] == 256
    assert any("faceset B" in w and "fewer than the model's 256" in w for w in asked.warnings)
    assert not any("--resolution" in w for w in asked.warnings)


def test_a_side_the_architecture_lacks_is_one_clear_line(
    hq_and_small: dict[str, Path], tmp_path: Path
) -> None:
    a, b = hq_and_small["s4_512"], hq_and_small["g1"]
    args = ["train", "--a", a, "--b", b, "--out", tmp_path / "m", "--model", "lite", "--resolution", "192"]
    proc = subprocess.run(
        [sys.executable, "-m", "faceloom", *map(str, args), "--iterations", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--resolution must be one of 64, 128 for this architecture, got 192" in lines[0]
    assert not (tmp_path / "m" / "model.json").exists()
