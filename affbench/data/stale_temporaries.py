"""Hidden temporary folders of atomic writers, and the cleaning of those their writers left behind.

A writer builds ``<parent>/.<name>.tmp-<pid>-<random>`` and renames it into place; a writer killed mid-way
leaves it. The next writer of the same target removes the ones whose owner is gone: the PID in the name is not
a live process, or (for names without a PID, or a PID reused after a reboot) the folder is older than
STALE_AFTER_S. A folder of a live writer is never touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from affbench.run_lock import pid_alive

STALE_AFTER_S = 24 * 3600
_PID = re.compile(r"^(\d+)-[0-9a-f]+$")

log = logging.getLogger("affbench.data.shards")


def temporary_name(name: str, role: str) -> str:
    """``.<name>.<role>-<pid>-<random>``: hidden, unique, and naming the process that owns it."""
    return f".{name}.{role}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_stale(path: Path, *, now: float | None = None) -> bool:
    """Whether the writer of a temporary folder is gone (dead PID, or older than STALE_AFTER_S)."""
    suffix = path.name.rsplit("-", 2)
    match = _PID.match("-".join(suffix[-2:])) if len(suffix) == 3 else None
    if match is not None and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
        return True
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except OSError:
        return False
    return age > STALE_AFTER_S


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the stale ``.<target name>.tmp-*`` / ``.old-*`` siblings of `target`; returns what was removed."""
    removed = []
    for role in ("tmp", "old"):
        for path in target.parent.glob(f".{target.name}.{role}-*"):
            if path.is_dir() and is_stale(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
                log.info("removed %s, left by a writer that was killed", path)
    return removed
