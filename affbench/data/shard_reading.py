"""Reading the samples of one shard safely, under the corrupt-input policy ("raise" or "skip").

A shard is streamed once with large buffered reads; members are grouped into samples by key (the member name
up to the first dot of its base name, as webdataset does). Three kinds of damage are told apart:

* the shard is missing, has a different size than its manifest says (truncated), or its tar stream breaks:
  the shard is corrupt; "raise" fails with the shard's path, "skip" stops reading it and counts one skipped
  shard (complete samples read before the damage are kept);
* a sample carries an unsafe extension, misses a field, or holds a malformed payload: the sample is corrupt;
  "raise" fails naming shard and key, "skip" drops the sample and counts it;
* a shard whose sample count differs from the manifest is corrupt (e.g. a valid but empty tar);
* a shard whose checksum differs from the one its manifest recorded is corrupt (bytes flipped on disk, same size).
  It is verified before its first sample is yielded, once per process per file version (see checksums.py).
"""

from __future__ import annotations

import logging
import mmap
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from affbench.data.checksums import file_version, mismatch_message, verify_buffer
from affbench.data.shard_manifest import ShardInfo
from affbench.data.shard_payloads import CorruptShardError, is_safe_extension

ON_CORRUPT = ("raise", "skip")
_MAX_REASONS = 20
# Same key rule as webdataset: directory part + base name up to its first dot; the rest is the extension.
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]+)$")

log = logging.getLogger("affbench.data.shards")


def check_on_corrupt(on_corrupt: str) -> str:
    """Validate an ``on_corrupt`` policy name."""
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
    return on_corrupt


@dataclass
class SkipCounts:
    """What the "skip" policy dropped: whole shards (or their damaged tails) and single samples."""

    shards: int = 0
    samples: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.shards + self.samples

    def record(self, error: CorruptShardError, *, shard_level: bool) -> None:
        if shard_level:
            self.shards += 1
        else:
            self.samples += 1
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(str(error))
        log.warning("skipping (on_corrupt='skip'): %s", error)

    def merge(self, other: SkipCounts) -> None:
        self.shards += other.shards
        self.samples += other.samples
        self.reasons.extend(other.reasons[: max(0, _MAX_REASONS - len(self.reasons))])

    def summary(self) -> str:
        return f"{self.shards} corrupt shard(s) and {self.samples} corrupt sample(s) skipped"


Decoder = Callable[[dict[str, memoryview], str], Any]


def iter_shard_samples(
    shard: ShardInfo,
    decode: Decoder,
    *,
    required: frozenset[str],
    on_corrupt: str,
    counts: SkipCounts,
) -> Iterator[Any]:
    """Decoded samples of one shard in stored order; ``decode(members, key)`` raises ValueError on a bad sample."""
    try:
        yield from _iter_checked(shard, decode, required, on_corrupt, counts)
    except CorruptShardError as exc:
        if on_corrupt == "raise":
            raise
        counts.record(exc, shard_level=True)


def _iter_checked(shard, decode, required, on_corrupt, counts) -> Iterator[Any]:
    path = shard.path
    buffer = open_shard(shard)
    seen = 0
    for key, members in iter_member_groups(buffer, path):
        seen += 1
        try:
            sample = _decode_sample(key, members, decode, required)
        except ValueError as exc:
            error = CorruptShardError(path, str(exc), key=key)
            if on_corrupt == "raise":
                raise error from None
            counts.record(error, shard_level=False)
            continue
        yield sample
    if seen != shard.count:
        raise CorruptShardError(path, f"holds {seen} samples but the manifest lists {shard.count}")


def open_shard(shard: ShardInfo) -> memoryview:
    """The mapped bytes of a shard whose size and checksum are those its manifest lists; CorruptShardError when
    it is missing, truncated, unreadable or altered."""
    path = shard.path
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise CorruptShardError(path, f"cannot be opened ({exc.strerror or exc})") from None
    if size != shard.size:
        raise CorruptShardError(path, f"holds {size} bytes but the manifest lists {shard.size} (truncated or altered)")
    try:
        buffer, st = _map_shard(path)
    except OSError as exc:
        raise CorruptShardError(path, f"cannot be read ({exc.strerror or exc})") from None
    if shard.checksum is not None and (
            found := verify_buffer(buffer, shard.checksum, file_version(path, st, shard.checksum))) is not None:
        raise CorruptShardError(path, mismatch_message(found, shard.checksum))
    return buffer


def _decode_sample(key: str, members: dict[str, memoryview], decode: Decoder, required: frozenset[str]) -> Any:
    unsafe = sorted(ext for ext in members if not is_safe_extension(ext))
    if unsafe:
        raise ValueError(f"unsafe member(s) {', '.join('.' + e for e in unsafe)}; only .npy, .json, .jpg, .cls are read")
    missing = sorted(required - members.keys())
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    return decode(members, key)


def iter_member_groups(buffer: memoryview, path: str) -> Iterator[tuple[str, dict[str, memoryview]]]:
    """(key, {extension: payload view}) of each sample of a mapped shard, in stored order; CorruptShardError on a
    broken tar stream or a member name without a key."""
    key: str | None = None
    members: dict[str, memoryview] = {}
    try:
        for name, data in _iter_tar_members(buffer, path):
            match = _KEY_EXT.match(name)
            if match is None:
                raise CorruptShardError(path, f"member {name!r} has no '<key>.<extension>' name")
            name_key, ext = match.group(1), match.group(2).lower()
            if key is not None and name_key != key:
                yield key, members
                members = {}
            key = name_key
            if ext in members:
                raise CorruptShardError(path, f"duplicate member {name!r}", key=key)
            members[ext] = data
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, CorruptShardError):
            raise
        raise CorruptShardError(path, f"broken tar stream ({type(exc).__name__}: {exc})") from None
    if key is not None:
        yield key, members


def _map_shard(path: str) -> tuple[memoryview, os.stat_result]:
    # The status is that of the file mapped, so the version a checksum is remembered under is of these bytes.
    # Member payloads are zero-copy views of the page cache: the only copy of a feature array is the one into
    # its batch. Shards are never modified in place (sets are swapped by rename), so the mapping stays valid
    # even when a newer set replaces this one while it is read.
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size == 0:
            return memoryview(b""), st
        try:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a file system without mmap support
            return memoryview(fh.read()), st
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    return memoryview(mapped), st


# A minimal tar reader over the mapped shard: webdataset shards are plain ustar files, and slicing members out
# of the mapping (instead of tarfile's 10 kB stream chunks and per-header objects) is what makes loading fast.
# GNU long names ('L') and pax 'path'/'size' records are understood; links, directories and devices are refused.
_BLOCK = 512
_REGULAR = (b"0", b"\0")
_ZERO_BLOCK = bytes(_BLOCK)


def _octal(field: bytes, what: str) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 encoding for very large sizes
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ValueError(f"bad {what} field {field!r} in a tar header") from None


def _slice(buffer: memoryview, start: int, size: int, what: str) -> memoryview:
    if start + size > len(buffer):
        raise ValueError(f"unexpected end of file in {what} ({len(buffer) - start} of {size} bytes): truncated")
    return buffer[start : start + size]


def _iter_tar_members(buffer: memoryview, path: str) -> Iterator[tuple[str, memoryview]]:
    long_name: str | None = None
    pax: dict[str, str] = {}
    pos = 0
    while True:
        if pos >= len(buffer):
            raise ValueError("no end-of-archive marker: the shard is truncated")
        header = bytes(_slice(buffer, pos, _BLOCK, "a tar header"))
        if header == _ZERO_BLOCK:
            return  # end-of-archive (a second zero block and padding may follow)
        checksum = _octal(header[148:156], "checksum")
        if checksum != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise ValueError(f"tar header checksum mismatch at byte {pos}")
        pos += _BLOCK
        size = _octal(header[124:136], "size")
        kind = header[156:157]
        if kind in (b"L", b"x", b"g"):
            data = bytes(_slice(buffer, pos, size, "an extended header"))
            pos += -(-size // _BLOCK) * _BLOCK
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8")
            elif kind == b"x":
                pax = _parse_pax(data)
            continue
        name = long_name or pax.get("path")
        if name is None:
            name = header[0:100].split(b"\0", 1)[0].decode("utf-8")
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8") if header[257:262] == b"ustar" else ""
            if prefix:
                name = f"{prefix}/{name}"
        if "size" in pax:
            size = int(pax["size"])
        long_name, pax = None, {}
        if kind not in _REGULAR:
            # Links and devices have no business in a shard; nothing is ever extracted to disk anyway.
            raise CorruptShardError(path, f"member {name!r} is not a regular file (type {kind!r})")
        data = _slice(buffer, pos, size, f"member {name!r}")
        pos += -(-size // _BLOCK) * _BLOCK
        yield name, data


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= 0:
            raise ValueError("bad pax record length")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8")
        pos += length
    return records
