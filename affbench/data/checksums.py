"""Checksums of cached files: a flipped byte of the same size must not be read silently.

zlib.crc32 (standard library, ~2.4 GB/s on one core here) is recorded in manifests for every shard and every
cached feature file, and verified when the file is read. It catches storage corruption, not tampering (a
hostile writer can forge a crc32): the safety against hostile files is the safe decoding of their payloads.
"""

from __future__ import annotations

import zlib
from pathlib import Path

ALGORITHM = "crc32"
_BLOCK = 1 << 20


def buffer_crc32(data: bytes | memoryview) -> int:
    """crc32 of bytes already in memory (a mapped shard, an encoded file)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def file_crc32(path: str | Path) -> int:
    """crc32 of a file's bytes, read in 1 MiB blocks."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc & 0xFFFFFFFF


def mismatch_message(found: int, expected: int) -> str:
    """The shared wording of a checksum failure."""
    return (f"{ALGORITHM} {found:08x} differs from {expected:08x} recorded when it was written (flipped bytes on "
            "disk)")
