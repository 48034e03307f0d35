"""Checksums of cached shards: a flipped byte of the same size must not be read silently.

xxh3_64 (the ``xxhash`` package) is recorded in every shard-set manifest and verified each time a shard is
read. Measured on one core of the 2-core development machine: 7.0 GB/s, against 1.9 GB/s for the standard
library's zlib.crc32, which cost the loader 20 % of its throughput. It catches storage corruption, not
tampering (a hostile writer can forge it): the safety against hostile files is the safe decoding of payloads.
"""

from __future__ import annotations

from pathlib import Path

import xxhash

ALGORITHM = "xxh3_64"
_BLOCK = 1 << 20


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


def mismatch_message(found: int, expected: int) -> str:
    """The shared wording of a checksum failure."""
    return (f"{ALGORITHM} checksum {found:016x} differs from {expected:016x} recorded when it was written "
            "(bytes changed on disk)")
