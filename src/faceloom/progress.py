"""The one progress protocol and the one cancellation exception of the library.

Every long-running function takes ``progress: ProgressFn | None`` and ``cancel: threading.Event |
None``. It calls ``progress(Progress(...))`` as it goes and, when ``cancel`` is set, stops at the
next safe point (saving what it made) and raises :class:`Cancelled`, or returns early where its
result says so (training: ``stopped_by="cancelled"``). The library never prints; the CLI's tqdm
adapter (:mod:`faceloom.cli.progress`) and the UI's job log turn events into bars and lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Cancelled(Exception):
    """Work stopped because its cancel event was set; what was finished is kept."""


@dataclass(frozen=True)
class Progress:
    """One progress event.

    Attributes:
        task: what is being worked on: a file name, ``"train"``, a stage of a workspace run.
        done: units done (frames, steps, or a share of 1.0 with ``total=1.0``).
        total: units in all, or None while unknown.
        message: a short line for a person ("step 120, loss_a 0.031").
        detail: the caller's own record of the moment (training: a ``StepReport``).
    """

    task: str
    done: float
    total: float | None = None
    message: str = ""
    detail: Any = None

    @property
    def fraction(self) -> float | None:
        """done / total, clipped to [0, 1]; None without a total."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


ProgressFn = Callable[[Progress], None]


def report(
    progress: ProgressFn | None,
    task: str,
    done: float,
    total: float | None = None,
    message: str = "",
    detail: Any = None,
) -> None:
    """Call ``progress`` (when there is one) with one event."""
    if progress is not None:
        progress(Progress(task, done, total, message, detail))


__all__ = ["Cancelled", "Progress", "ProgressFn", "report"]
