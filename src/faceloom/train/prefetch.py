"""Build the items of the next steps in background threads, so data never starves the model."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_GPU_WORKERS = 6
"""Batch-building threads per rank on a GPU; one builds about 200-400 faces/s at 256 px on one core."""


def prefetch_plan(device_type: str, world: int = 1, cores: int | None = None) -> tuple[int, int]:
    """:class:`Prefetcher`'s ``(depth, workers)`` for ``world`` ranks on ``device_type`` sharing ``cores``.

    On a CPU the step itself uses every core, so one thread building the next batches is enough to
    hide them. On a GPU the cores are free, and one thread cannot keep up with the step, so each rank
    builds batches on its share of the cores, keeping one for the loop itself.
    """
    if device_type != "cuda":
        return 3, 1
    per_rank = max(1, (cores or os.cpu_count() or 1) // max(1, world))
    workers = max(1, min(MAX_GPU_WORKERS, per_rank - 1))
    return max(3, 2 * workers), workers


class Prefetcher(Generic[T]):
    """Builds items for steps ahead in background threads, so data never starves the model.

    numpy and OpenCV release the GIL, so batch building overlaps the training step. Items are made by
    ``make(step)`` for ``start_step, start_step + 1, ...``, up to ``depth`` steps ahead of the one
    being consumed. A :meth:`get` for any other step than the next drops what was queued and starts
    again from that step.

    Args:
        make: builds the item of one step (must be safe to call from several threads when
            ``workers > 1``).
        start_step: first step :meth:`get` will ask for.
        depth: how many steps ahead to build.
        workers: threads building items.

    Example:
        >>> with Prefetcher(lambda s: data.batch(s, 16), start_step=0) as pre:
        ...     for step in range(100):
        ...         batch = pre.get(step)
    """

    def __init__(self, make: Callable[[int], T], start_step: int, depth: int = 4, workers: int = 1) -> None:
        if depth < 1 or workers < 1:
            raise ValueError(f"depth and workers must be >= 1, got {depth}, {workers}")
        self._make = make
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceloom-prefetch")
        self._futures: dict[int, Future[T]] = {}
        self._next = start_step
        self._submitted = start_step
        self._closed = False
        self._fill()

    def _fill(self) -> None:
        while self._submitted <= self._next + self._depth - 1:
            self._futures[self._submitted] = self._pool.submit(self._make, self._submitted)
            self._submitted += 1

    def _drop(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()

    def get(self, step: int) -> T:
        """The item of ``step``; blocks until it is ready and re-raises an error of ``make``."""
        if self._closed:
            raise RuntimeError("Prefetcher is closed")
        if step != self._next:
            self._drop()
            self._submitted = step
        self._next = step + 1
        fut = self._futures.pop(step, None)
        if fut is None:
            fut = self._pool.submit(self._make, step)
            self._submitted = max(self._submitted, step + 1)
        self._fill()
        return fut.result()

    def close(self) -> None:
        """Cancel queued items and wait for the running ones to end."""
        if self._closed:
            return
        self._closed = True
        self._drop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
