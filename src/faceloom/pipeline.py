"""Stages joined by bounded queues: each stage runs in its own thread(s) and overlaps the others.

Extract uses it first; convert, eval and the UI's jobs reuse it. Items keep their order at the sink
even when a stage runs several workers, and memory stays bounded by the queue sizes.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faceloom.progress import Cancelled

__all__ = [
    "Cancelled",
    "PipelineStats",
    "Stage",
    "StageStats",
    "get_unless_stopped",
    "put_unless_stopped",
    "run_pipeline",
]

_END = object()


@dataclass
class Stage:
    """One step of a pipeline.

    ``make`` is called once in each worker thread and returns the function that handles an item
    there, so a stage can hold per-thread state (a detector is not thread-safe). The function
    returns the item for the next stage, or None to drop it.
    """

    name: str
    make: Callable[[], Callable[[Any], Any]]
    workers: int = 1
    teardown: Callable[[Callable[[Any], Any]], None] | None = None


@dataclass
class StageStats:
    name: str
    items: int = 0
    busy_s: float = 0.0


@dataclass
class PipelineStats:
    wall_s: float = 0.0
    items: int = 0
    stages: list[StageStats] = field(default_factory=list)

    def shares(self) -> dict[str, float]:
        """Busy time of each stage as a share of the wall time (over 1.0 for multi-worker stages)."""
        return {s.name: (s.busy_s / self.wall_s if self.wall_s > 0 else 0.0) for s in self.stages}

    def slowest(self) -> str:
        return max(self.stages, key=lambda s: s.busy_s).name if self.stages else ""


def put_unless_stopped(q: queue.Queue[Any], obj: Any, stop: threading.Event, wait: float = 0.1) -> bool:
    """Put ``obj`` on ``q``, waiting for room; False (not put) once ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(obj, timeout=wait)
            return True
        except queue.Full:
            continue
    return False


def get_unless_stopped(q: queue.Queue[Any], stop: threading.Event, default: Any, wait: float = 0.1) -> Any:
    """The next item of ``q``, waiting for one; ``default`` once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=wait)
        except queue.Empty:
            continue
    return default


def run_pipeline(
    items: Iterable[Any],
    stages: list[Stage],
    sink: Callable[[Any], None],
    *,
    source_name: str = "decode",
    queue_size: int = 8,
    cancel: threading.Event | None = None,
) -> PipelineStats:
    """Feed ``items`` through ``stages`` and hand each result, in input order, to ``sink``.

    The iteration of ``items`` runs in its own thread (it is usually decoding). ``sink`` runs in the
    calling thread. An exception in any stage stops the pipeline and is re-raised here.
    """
    cancel = cancel or threading.Event()
    failed: list[BaseException] = []
    stop = threading.Event()
    stats = PipelineStats(stages=[StageStats(source_name)] + [StageStats(s.name) for s in stages])
    lock = threading.Lock()
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=queue_size) for _ in range(len(stages) + 1)]

    def put(q: queue.Queue[Any], obj: Any) -> bool:
        return put_unless_stopped(q, obj, stop)

    def fail(exc: BaseException) -> None:
        failed.append(exc)
        stop.set()

    def feed() -> None:
        st = stats.stages[0]
        seq = 0
        try:
            iterator = iter(items)
            while not stop.is_set() and not cancel.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                st.busy_s += time.perf_counter() - t0
                st.items += 1
                if not put(queues[0], (seq, item)):
                    return
                seq += 1
        except BaseException as exc:
            fail(exc)
        finally:
            put(queues[0], _END)

    remaining = [s.workers for s in stages]

    def work(i: int, stage: Stage) -> None:
        st = stats.stages[i + 1]
        fn: Callable[[Any], Any] | None = None
        try:
            fn = stage.make()
            while not stop.is_set():
                try:
                    got = queues[i].get(timeout=0.1)
                except queue.Empty:
                    continue
                if got is _END:
                    put(queues[i], _END)  # let sibling workers see it too
                    break
                seq, item = got
                t0 = time.perf_counter()
                out = fn(item)
                dt = time.perf_counter() - t0
                with lock:
                    st.busy_s += dt
                    st.items += 1
                # Dropped items still travel on so the sink's reordering does not wait for them.
                if not put(queues[i + 1], (seq, out)):
                    break
        except BaseException as exc:
            fail(exc)
        finally:
            if fn is not None and stage.teardown is not None:
                stage.teardown(fn)
            with lock:
                remaining[i] -= 1
                last = remaining[i] == 0
            if last:
                put(queues[i + 1], _END)

    threads = [threading.Thread(target=feed, name=source_name, daemon=True)]
    for i, stage in enumerate(stages):
        threads += [
            threading.Thread(target=work, args=(i, stage), name=f"{stage.name}-{w}", daemon=True)
            for w in range(stage.workers)
        ]
    t_start = time.perf_counter()
    for t in threads:
        t.start()

    pending: list[tuple[int, int, Any]] = []
    next_seq = 0
    tie = 0
    out_q = queues[-1]
    try:
        while True:
            if cancel.is_set():
                stop.set()
                break
            try:
                got = out_q.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    break
                continue
            if got is _END:
                break
            seq, out = got
            heapq.heappush(pending, (seq, tie, out))
            tie += 1
            while pending and pending[0][0] == next_seq:
                _, _, ready = heapq.heappop(pending)
                next_seq += 1
                if ready is not None:
                    sink(ready)
                    stats.items += 1
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        stats.wall_s = time.perf_counter() - t_start
    if failed:
        raise failed[0]
    if cancel.is_set():
        raise Cancelled()
    # Items left in `pending` only when the end marker overtook them: flush in order.
    for _, _, ready in sorted(pending, key=lambda x: (x[0], x[1])):
        if ready is not None:
            sink(ready)
            stats.items += 1
    return stats
