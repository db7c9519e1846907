"""The training log of a model dir: ``log.csv`` (written by the trainer, read by `model info`, the UI
and the benchmarks) and the TensorBoard events beside it. No torch import at module level."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from faceloom.fsutil import atomic_write_text

LOG_FILE = "log.csv"
TENSORBOARD_DIR = "tensorboard"


class TrainLog:
    """Appends rows to log.csv, and their numbers to TensorBoard when ``tensorboard`` is set and it is
    installed (a text value listed in ``codes`` goes there as its index). On resume, rows past the
    step training restarts from are dropped; a row with new columns (a loss turned on) widens the
    file."""

    COLUMNS_LAST = ("holdout_ssim_a", "holdout_ssim_b")

    def __init__(
        self,
        model_dir: Path,
        start_step: int,
        *,
        tensorboard: bool = False,
        codes: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.tb = tensorboard_writer(model_dir) if tensorboard else None
        self.codes = codes or {}
        self.path = model_dir / LOG_FILE
        self.columns: list[str] | None = None
        if self.path.exists():
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                self.columns = list(reader.fieldnames or [])
                kept = [r for r in reader if int(float(r["step"])) <= start_step]
            self._rewrite(kept)
        self.fh: Any = None

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns or ["step"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())

    def write(self, row: dict[str, Any]) -> None:
        if self.columns is None:
            self.columns = list(row) + [c for c in self.COLUMNS_LAST if c not in row]
            self._rewrite([])
        elif new := [k for k in row if k not in self.columns]:
            if self.fh is not None:
                self.fh.close()
                self.fh = None
            with open(self.path, newline="") as fh:
                kept = list(csv.DictReader(fh))
            last = [c for c in self.COLUMNS_LAST if c in self.columns]
            self.columns = [c for c in self.columns if c not in last] + new + last
            self._rewrite(kept)
        if self.tb is not None:
            for k, v in row.items():
                if k in self.codes:
                    self.tb.add_scalar(k, self.codes[k].index(v), row["step"])
                elif k not in ("step", "time_s") and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["step"])
        if self.fh is None:
            self.fh = open(self.path, "a", newline="")  # noqa: SIM115 - kept open across steps
        writer = csv.DictWriter(self.fh, fieldnames=self.columns, extrasaction="ignore")
        writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def tensorboard_writer(model_dir: Path) -> Any:
    """A TensorBoard SummaryWriter into the model dir, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the CSV log still has everything
        return None
    return SummaryWriter(str(model_dir / TENSORBOARD_DIR))


def iter_log(model_dir: str | Path) -> Iterator[dict[str, str]]:
    """The rows of a model dir's log.csv, as strings."""
    path = Path(model_dir) / LOG_FILE
    if path.exists():
        with open(path, newline="") as fh:
            yield from csv.DictReader(fh)


def latest_values(model_dir: str | Path) -> dict[str, str]:
    """The last value logged of each column (held-out scores are logged less often than losses)."""
    out: dict[str, str] = {}
    for row in iter_log(model_dir):
        out.update({k: v for k, v in row.items() if v not in ("", None)})
    return out


def loss_curves(model_dir: str | Path, max_points: int = 600) -> dict[str, Any]:
    """``{"columns": [step, loss_*, holdout_*], "rows": [[float | None, ...]]}``, thinned to at most
    about ``max_points`` rows (the last row always kept), for plotting."""
    path = Path(model_dir) / LOG_FILE
    if not path.is_file():
        return {"columns": [], "rows": []}
    with contextlib.suppress(OSError), open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [c for c in (reader.fieldnames or []) if c == "step" or c.startswith(("loss_", "holdout_"))]
        rows: list[list[float | None]] = []
        for r in reader:
            row: list[float | None] = []
            for c in fields:
                try:
                    row.append(float(r.get(c) or "nan"))
                except ValueError:
                    row.append(None)
            if row and row[0] is not None:
                rows.append([None if v is not None and v != v else v for v in row])
        if len(rows) > max_points:
            stride = -(-len(rows) // max_points)
            rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        return {"columns": fields, "rows": rows}
    return {"columns": [], "rows": []}
