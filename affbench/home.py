"""Where affbench keeps what it generates: one home folder, `$AFFBENCH_HOME` (default ``~/.cache/affbench``).

* ``<home>/synthaffect/<size>-seed<seed>/``: generated SynthAffect datasets;
* ``<home>/cache/<stage>/<key>/``: the content-addressed stage cache (frames, finetune, features, windows).

Runs are not kept here: they go where ``--out`` says (``runs/`` under the working folder by default).
This module imports nothing heavy: the command line asks it for paths before any stage runs.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "AFFBENCH_HOME"
DEFAULT_HOME = "~/.cache/affbench"


def affbench_home() -> Path:
    """$AFFBENCH_HOME, or ~/.cache/affbench when it is unset or empty."""
    return Path(os.environ.get(HOME_ENV, "").strip() or DEFAULT_HOME).expanduser()


def cache_root() -> Path:
    """The stage cache: <affbench home>/cache."""
    return affbench_home() / "cache"


def synthaffect_root() -> Path:
    """Where generated SynthAffect datasets live: <affbench home>/synthaffect."""
    return affbench_home() / "synthaffect"
