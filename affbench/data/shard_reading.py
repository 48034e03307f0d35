"""Reading the samples of one shard safely, under the corrupt-input policy ("raise" or "skip").

A shard is streamed once with large buffered reads; members are grouped into samples by key (the member name
up to the first dot of its base name, as webdataset does). Three kinds of damage are told apart:

* the shard is missing, has a different size than its manifest says (truncated), or its tar stream breaks:
  the shard is corrupt; "raise" fails with the shard's path, "skip" stops reading it and counts one skipped
  shard (complete samples read before the damage are kept);
* a sample carries an unsafe extension, misses a field, or holds a malformed payload: the sample is corrupt;
  "raise" fails naming shard and key, "skip" drops the sample and counts it;
* a shard whose sample count differs from the manifest is corrupt (e.g. a valid but empty tar).
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from affbench.data.shard_manifest import ShardInfo
from affbench.data.shard_payloads import CorruptShardError, is_safe_extension

ON_CORRUPT = ("raise", "skip")
_READ_BUFFER = 4 << 20
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


Decoder = Callable[[dict[str, bytes], str], Any]


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
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise CorruptShardError(path, f"cannot be opened ({exc.strerror or exc})") from None
    if size != shard.size:
        raise CorruptShardError(path, f"holds {size} bytes but the manifest lists {shard.size} (truncated or altered)")
    seen = 0
    for key, members in _iter_member_groups(path):
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


def _decode_sample(key: str, members: dict[str, bytes], decode: Decoder, required: frozenset[str]) -> Any:
    unsafe = sorted(ext for ext in members if not is_safe_extension(ext))
    if unsafe:
        raise ValueError(f"unsafe member(s) {', '.join('.' + e for e in unsafe)}; only .npy, .json, .jpg, .cls are read")
    missing = sorted(required - members.keys())
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    return decode(members, key)


def _iter_member_groups(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    key: str | None = None
    members: dict[str, bytes] = {}
    try:
        with open(path, "rb", buffering=_READ_BUFFER) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
            for info in tar:
                match = _KEY_EXT.match(info.name)
                if match is None:
                    raise CorruptShardError(path, f"member {info.name!r} has no '<key>.<extension>' name")
                if not info.isreg():
                    # Links and devices have no business in a shard; nothing is ever extracted to disk anyway.
                    raise CorruptShardError(path, f"member {info.name!r} is not a regular file")
                name_key, ext = match.group(1), match.group(2).lower()
                if key is not None and name_key != key:
                    yield key, members
                    members = {}
                key = name_key
                if ext in members:
                    raise CorruptShardError(path, f"duplicate member {info.name!r}", key=key)
                data = tar.extractfile(info).read()
                if len(data) != info.size:
                    raise CorruptShardError(path, f"member {info.name!r} is truncated", key=key)
                members[ext] = data
                tar.members = []  # streaming: do not keep every TarInfo of a big shard alive
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise CorruptShardError(path, f"broken tar stream ({type(exc).__name__}: {exc})") from None
    if key is not None:
        yield key, members
