"""What every benchmark script shares: where the real test clips are."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data``: the clips folder ($FACELOOM_TEST_DATA, else ../shared/data beside the checkout)."""
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("FACELOOM_TEST_DATA", REPO.parent / "shared" / "data")),
    )
