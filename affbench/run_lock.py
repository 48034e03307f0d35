"""Folder locks between processes: one process at a time owns a run folder or commits a shard set.

A lock is an ``fcntl.flock`` on a small lock file that holds the owner's PID (for the error message only: the
kernel releases the lock when its process dies, even by SIGKILL, so a stale file never blocks anyone). Locks
are re-entrant within a process, so a suite that holds a row's run folder can call ``train`` on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".affbench.lock"

_held: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, depth) held by this process
_held_lock = threading.Lock()


class FolderInUseError(OSError):
    """Another live process holds the lock of a folder."""


def lock_owner(lock_path: str | Path) -> str:
    """The PID recorded in a lock file, or '?' when it cannot be read."""
    try:
        return Path(lock_path).read_text(encoding="utf-8").strip() or "?"
    except OSError:
        return "?"


@contextlib.contextmanager
def folder_lock(lock_path: str | Path, *, what: str, wait: bool = False,
                poll_s: float = 0.05) -> Iterator[Path]:
    """Hold an exclusive lock on `lock_path` (a lock file, created if missing, or a directory) for the block.

    `wait=False` raises FolderInUseError ("<what> is in use by PID <pid>") when another process holds it;
    `wait=True` blocks until the other process is done.
    """
    path = Path(lock_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _held_lock:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            _release(key)
        return
    # A directory is locked through its own descriptor (no lock file is left in it); a file records the PID.
    is_dir = path.is_dir()
    fd = os.open(path, os.O_RDONLY) if is_dir else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise FolderInUseError(
                        f"{what} is in use by PID {lock_owner(path)} (lock {path}); wait for that process to "
                        "finish or choose another --out") from None
                time.sleep(poll_s)
        if not is_dir:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    with _held_lock:
        _held[key] = (fd, 1)
    try:
        yield path
    finally:
        _release(key)


def _release(key: str) -> None:
    with _held_lock:
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        del _held[key]
    # The file stays: unlinking it would let a waiter lock an inode a newcomer no longer sees.
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def run_folder_lock(run_dir: str | Path, *, wait: bool = False):
    """The lock of one run folder (``<run_dir>/.affbench.lock``): one training process per run folder."""
    return folder_lock(Path(run_dir) / LOCK_NAME, what=f"run folder {run_dir}", wait=wait)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
