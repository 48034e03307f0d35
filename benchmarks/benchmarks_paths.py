"""Scratch folders of the benchmarks."""

from __future__ import annotations

import shutil
from pathlib import Path


def fresh_dir(path: Path) -> Path:
    """`path` as a new empty folder (whatever a previous round left there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
