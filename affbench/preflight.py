"""Checks that run before the expensive stages: the folders a run will write to must be writable now.

Without them an unwritable ``--out`` fails only after stages 1-2 have spent minutes filling the cache.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def check_writable(directory: str | Path, what: str) -> Path:
    """Create `directory` if needed and prove a file can be written in it; ValueError naming it otherwise."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".affbench-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{what} {directory}: not writable ({reason}); choose a folder you can write to") from None
    return directory


def check_run_folders(out_dir: str | Path | None, *, cache: bool = True) -> None:
    """`--out` (when given) and, when stages 1-2 may run, the cache under AFFBENCH_HOME must be writable."""
    from affbench.home import HOME_ENV, cache_root

    if out_dir is not None:
        check_writable(out_dir, "--out")
    if cache:
        check_writable(cache_root(), f"the cache (${HOME_ENV}/cache)")
