"""The shared stage pipeline on real decoded frames: order, overlap, failure and cancel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceloom.media.reader import Frame, iter_video
from faceloom.pipeline import Stage, run_pipeline
from faceloom.progress import Cancelled


def _gray_mean(frame_rgb: np.ndarray) -> float:
    return float(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY).mean())


def test_results_arrive_in_order_with_parallel_workers(grid: dict[str, Path]) -> None:
    expected = [(f.index, _gray_mean(f.rgb)) for f in iter_video(grid["g1"])]
    rng = np.random.default_rng(1)
    delays = rng.uniform(0, 0.004, len(expected))

    def make() -> Callable[[Frame], tuple[int, float]]:
        def work(frame: Frame) -> tuple[int, float]:
            idx = frame.index
            time.sleep(delays[idx])  # uneven work so the two workers overtake each other
            return idx, _gray_mean(frame.rgb)

        return work

    got: list[tuple[int, float]] = []
    stats = run_pipeline(iter_video(grid["g1"]), [Stage("measure", make, workers=2)], got.append)
    assert got == expected
    assert stats.items == 75
    assert [s.name for s in stats.stages] == ["decode", "measure"]
    assert stats.stages[1].items == 75 and stats.stages[1].busy_s > 0


def test_dropped_items_do_not_stall_and_stages_overlap(grid: dict[str, Path]) -> None:
    def make_slow() -> Callable[[Frame], Frame]:
        def slow(f: Frame) -> Frame:
            time.sleep(0.01)
            return f

        return slow

    def make_filter() -> Callable[[Frame], Frame | None]:
        return lambda f: f if f.index % 3 == 0 else None

    kept: list[int] = []
    t0 = time.perf_counter()
    stats = run_pipeline(
        iter_video(grid["g1"]),
        [Stage("slow-a", make_slow), Stage("slow-b", make_slow), Stage("filter", make_filter)],
        lambda f: kept.append(f.index),
    )
    wall = time.perf_counter() - t0
    assert kept == list(range(0, 75, 3))
    # two 10 ms stages over 75 frames: 1.5 s if run one after the other, about half overlapped
    assert wall < 0.75 * (2 * 0.01 * 75) + 0.5
    assert stats.slowest() in ("slow-a", "slow-b")


def test_stage_failure_is_raised_and_threads_stop(grid: dict[str, Path]) -> None:
    def make() -> Callable[[Frame], Frame]:
        def boom(f: Frame) -> Frame:
            if f.index == 10:
                raise RuntimeError("broken frame 10")
            return f

        return boom

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="broken frame 10"):
        run_pipeline(iter_video(grid["g1"]), [Stage("boom", make)], lambda f: None)
    time.sleep(0.3)
    assert threading.active_count() <= before


def test_cancel_stops_early(grid: dict[str, Path]) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def sink(f: Frame) -> None:
        seen.append(f.index)
        if len(seen) == 5:
            cancel.set()

    with pytest.raises(Cancelled):
        run_pipeline(iter_video(grid["g1"]), [Stage("id", lambda: lambda f: f)], sink, cancel=cancel)
    assert 5 <= len(seen) < 75
