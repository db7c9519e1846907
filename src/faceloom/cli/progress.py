"""The CLI's one progress adapter: :class:`faceloom.progress.Progress` events to tqdm bars."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from faceloom.cli.output import echo, state
from faceloom.progress import Progress


class Bars:
    """One tqdm bar per task: a new task closes the previous bar.

    ``unit`` names what ``done`` counts ("frame", "step"); ``percent=True`` shows tasks whose
    ``done`` is a share of 1.0 (workspace stages) as 0-100 %, and prints a line when a task reaches
    1.0 (a stage finished or was skipped).
    """

    def __init__(self, unit: str = "frame", percent: bool = False) -> None:
        self.unit = unit
        self.percent = percent
        self.bar: Any = None
        self.task: str | None = None
        self.shown = -1.0
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        if self.percent and p.done >= (p.total or 1.0):
            self.close()
            echo(f"{p.task:<8} {p.message}")
            return
        if self.bar is None or p.task != self.task:
            self._open(p)
        now = time.monotonic()
        n = round(p.done * 100) if self.percent else p.done
        if (n != self.shown and now - self.last > 0.2) or now - self.last > 1.0 or n == p.total:
            if not self.percent and p.total is not None:
                self.bar.total = max(p.total, p.done)
            self.bar.n = n
            if p.message:
                self.bar.set_postfix_str(p.message[-70:], refresh=False)
            self.bar.refresh()
            self.shown, self.last = n, now

    def _open(self, p: Progress) -> None:
        from tqdm import tqdm

        self.close()
        self.task = p.task
        if self.percent:
            self.bar = tqdm(
                total=100,
                desc=f"{p.task:<8}",
                disable=state.quiet,
                dynamic_ncols=True,
                leave=False,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
            )
        else:
            self.bar = tqdm(
                total=p.total,
                desc=Path(p.task).name,
                unit=self.unit,
                disable=state.quiet,
                dynamic_ncols=True,
                leave=False,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.task, self.shown = None, None, -1.0

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
