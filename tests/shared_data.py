"""Where the shared data lies: ``../shared`` beside the repository (CI), else ``$SAMIAM_SHARED``
or ``/work/shared``; tests that need it skip with the reason when none exists."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

CANDIDATES = (Path(__file__).resolve().parents[1].parent / "shared",
              Path(os.environ.get("SAMIAM_SHARED", "/work/shared")))


def shared_dir() -> Path:
    for candidate in CANDIDATES:
        if candidate.is_dir():
            return candidate
    pytest.skip(f"shared data not found (looked in {', '.join(map(str, CANDIDATES))}; set SAMIAM_SHARED)")


def formats_dir() -> Path:
    """``shared/data/formats``: small real files in each microscope format (see its README)."""
    return shared_dir() / "data" / "formats"


def velox_files(into: Path) -> list[Path]:
    """Extract the two Velox EMD v11 files of ``velox_emd_version11.zip`` into ``into``."""
    with zipfile.ZipFile(formats_dir() / "velox_emd_version11.zip") as archive:
        names = [name for name in archive.namelist() if name.endswith(".emd")]
        archive.extractall(into, names)
    return sorted(into / name for name in names)
