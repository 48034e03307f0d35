"""Checksums of cached shards: a flipped byte of the same size must not be read silently.

xxh3_64 (the ``xxhash`` package) is recorded in every shard-set manifest and verified before a shard's first
sample is read. Measured on one core of the 2-core development machine: 9 GB/s on bytes already in memory (6 ms
for the loader benchmark's 56 MB of shards), against 2.5 GB/s for the standard library's zlib.crc32; xxh3_128
costs about the same. It catches storage corruption, not tampering (a hostile writer can forge it): the safety
against hostile files is the safe decoding of payloads.

**Verified once per process per file version.** Hashing every shard on every read cost the loader 3-9 % of its
throughput (the hash is a pass over all the bytes that the reader itself only copies once). A shard whose bytes
matched is remembered under its *version*: path, device, inode, size, mtime and ctime (both in ns) and the
expected checksum; the next read of that same version in the same process skips the hash. Any write through the
file system changes the version: a write or truncation moves mtime and ctime, restoring the mtime with
``os.utime`` still moves ctime (which no user call can set back), and a replacement by rename changes the inode.
So a flip made by any program between two epochs is caught on the next read. What a version cannot see is a
flip beneath the file system (failing media, a faulty controller) during the process's lifetime; the next
process verifies the bytes again, and a DataLoader worker started by the ``spawn`` method verifies them itself.
A file whose ctime is less than ``_RACY_SECONDS`` old is never remembered (the "racily clean" rule of git's
index): on a file system with coarse timestamps a second write within the same clock tick would keep its version.
On Windows ``st_ctime`` is the creation time, so nothing is remembered there and every read is hashed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import xxhash

ALGORITHM = "xxh3_64"
_BLOCK = 1 << 20
# Coarser than any file system's timestamp granularity (FAT: 2 s; ext3, HFS+: 1 s; others: a clock tick).
_RACY_SECONDS = 2.0

FileVersion = tuple[str, int, int, int, int, int, int]
_verified: set[FileVersion] = set()


def buffer_checksum(data: bytes | memoryview) -> int:
    """xxh3_64 of bytes already in memory (a mapped shard)."""
    return xxhash.xxh3_64_intdigest(data)


def file_checksum(path: str | Path) -> int:
    """xxh3_64 of a file's bytes, read in 1 MiB blocks."""
    digest = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.intdigest()


def file_version(path: str, st: os.stat_result, expected: int) -> FileVersion | None:
    """The key a verified file is remembered under (``st`` from the open file whose bytes are checked), or None
    where it must not be remembered: a file changed too recently to tell a later change apart, or on Windows."""
    if os.name != "posix" or time.time_ns() - st.st_ctime_ns < _RACY_SECONDS * 1e9:
        return None
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, expected)


def verify_buffer(data: bytes | memoryview, expected: int, version: FileVersion | None) -> int | None:
    """None when `data` has the checksum `expected` (hashed unless this `version` matched before in this
    process), else the checksum found."""
    if version is not None and version in _verified:
        return None
    found = buffer_checksum(data)
    if found != expected:
        return found
    if version is not None:
        _verified.add(version)
    return None


def verified_versions() -> frozenset[FileVersion]:
    """The file versions this process verified (a DataLoader worker sends them to its parent)."""
    return frozenset(_verified)


def remember_verified(versions: Iterable[FileVersion]) -> None:
    """Adopt versions another process of this run verified (the next forked workers inherit them)."""
    _verified.update(versions)


def mismatch_message(found: int, expected: int) -> str:
    """The shared wording of a checksum failure."""
    return (f"{ALGORITHM} checksum {found:016x} differs from {expected:016x} recorded when it was written "
            "(bytes changed on disk)")
