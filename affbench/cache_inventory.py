"""What affbench keeps under its home folder, how big and how recently used it is, and its safe removal.

An *entry* is one folder: a stage-cache entry ``<home>/cache/<stage>/<key>/`` or a generated dataset
``<home>/synthaffect/<size>-seed<seed>/``. It is complete when its marker file exists (``manifest.json``, written
last; ``synthaffect.json`` for a dataset). Hidden ``.<name>.tmp-*`` / ``.old-*`` folders beside the entries are
what killed writers left behind (affbench.data.stale_temporaries).

Removal never leaves a half-deleted entry that looks valid: the entry is first renamed to a hidden
``.<key>.old-<pid>-<id>`` sibling (one atomic rename: a reader sees the whole entry or nothing), then deleted. If
the deletion is interrupted, the hidden folder is a leftover that the next ``clear`` removes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from affbench.home import cache_root, synthaffect_root

# stage -> the file whose presence makes an entry complete. The four cache stages follow
# affbench.stages.feature_cache (FORMAT_VERSIONS, MANIFEST); the SynthAffect generator writes synthaffect.json last.
STAGE_MARKERS = {"frames": "manifest.json", "finetune": "manifest.json", "features": "manifest.json",
                 "windows": "manifest.json", "synthaffect": "synthaffect.json"}
STAGES = tuple(STAGE_MARKERS)
_TEMPORARY_ROLES = (".tmp-", ".old-")


@dataclass(frozen=True)
class Entry:
    """One folder under the home: a cache entry, a generated dataset, or a leftover temporary folder."""

    stage: str
    path: Path
    size: int  # bytes of every file in it
    files: int
    last_used: float  # newest mtime of the folder and its files (a cache hit touches the manifest)
    complete: bool
    leftover: bool  # a hidden temporary folder left by a writer

    def age_days(self, now: float | None = None) -> float:
        return max(0.0, ((now if now is not None else time.time()) - self.last_used) / 86400.0)


def stage_folder(stage: str) -> Path:
    """The folder that holds a stage's entries."""
    if stage not in STAGE_MARKERS:
        raise ValueError(f"unknown cache stage '{stage}'; accepted: {', '.join(STAGES)}")
    return synthaffect_root() if stage == "synthaffect" else cache_root() / stage


def _measure(path: Path) -> tuple[int, int, float]:
    """(bytes, files, newest mtime) of a folder tree; files vanishing meanwhile are skipped."""
    size = files = 0
    newest = path.stat().st_mtime
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            size += st.st_size
            files += 1
            newest = max(newest, st.st_mtime)
    return size, files, newest


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and any(role in name for role in _TEMPORARY_ROLES)


def list_entries(stages: Iterable[str] = STAGES) -> list[Entry]:
    """Every entry of the given stages (sorted by stage, then path); missing stage folders hold none."""
    out = []
    for stage in stages:
        folder = stage_folder(stage)
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_dir() or (path.name.startswith(".") and not _is_temporary(path.name)):
                continue
            try:
                size, files, newest = _measure(path)
            except FileNotFoundError:  # removed meanwhile
                continue
            leftover = _is_temporary(path.name)
            complete = not leftover and (path / STAGE_MARKERS[stage]).is_file()
            out.append(Entry(stage, path, size, files, newest, complete, leftover))
    return out


def removable(entries: Sequence[Entry], *, older_than_days: float | None = None,
              now: float | None = None) -> list[Entry]:
    """The entries `clear` removes: those unused for more than `older_than_days` (all when None). A leftover
    temporary folder goes only once its writer is gone (affbench.data.stale_temporaries.is_stale)."""
    from affbench.data.stale_temporaries import is_stale

    now = time.time() if now is None else now
    chosen = []
    for entry in entries:
        if entry.leftover and not is_stale(entry.path, now=now):
            continue  # a writer at work
        if older_than_days is not None and entry.age_days(now) <= older_than_days:
            continue
        chosen.append(entry)
    return chosen


def remove_entry(entry: Entry) -> None:
    """Remove one entry: rename it out of the way (atomic), then delete the renamed folder."""
    from affbench.data.stale_temporaries import temporary_name

    doomed = entry.path
    if not entry.leftover:
        doomed = entry.path.parent / temporary_name(entry.path.name, "old")
        os.rename(entry.path, doomed)
    shutil.rmtree(doomed)


def format_size(n: float) -> str:
    """Bytes in decimal units: '0 B', '812.0 kB', '1.2 GB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_age(days: float) -> str:
    """'45 s', '12 min', '3.5 h', '2.0 d'."""
    seconds = days * 86400
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if days < 1:
        return f"{seconds / 3600:.1f} h"
    return f"{days:.1f} d"


def folder_size(path: str | Path) -> int:
    """Bytes of every file under `path` (0 when it does not exist)."""
    path = Path(path)
    return _measure(path)[0] if path.exists() else 0
