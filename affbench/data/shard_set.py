"""A committed shard set on disk, as every shard reader sees it: manifest, shards, corrupt-input policy."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from affbench.data.shard_manifest import check_provenance, read_manifest, shard_infos
from affbench.data.shard_reading import SkipCounts, check_on_corrupt, iter_shard_samples


class ShardSet:
    """Base of the shard readers: subclasses name their manifest ``kind``, ``required`` members and decoder.

    Opening a set reads and checks its manifest (a folder without one is never read) and, when ``expect`` is
    given, refuses a set whose provenance differs from it.
    """

    kind: ClassVar[str]
    required: ClassVar[frozenset[str]]
    decode: ClassVar[Callable[[dict[str, memoryview], str], Any]]

    def __init__(
        self, directory: str | os.PathLike, expect: Mapping[str, Any] | None = None, on_corrupt: str = "raise"
    ) -> None:
        self.directory = Path(directory)
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self.manifest = read_manifest(self.directory, kind=self.kind)
        self.provenance: dict[str, Any] = self.manifest.get("provenance", {})
        check_provenance(self.directory, self.provenance, expect)
        self.shards = shard_infos(self.directory, self.manifest)
        self.skipped = SkipCounts()

    def batch_stream(self, *, collate: Callable[[list[Any]], dict], batch_size: int, decode: Any = None,
                     **options: Any):
        """The set's shards as a stream of collated batches (a ShardBatchStream: `options` are its shuffle, epoch,
        rank and resampling arguments), read with the set's required members and corrupt-input policy; `decode`
        defaults to the set's own decoder."""
        from affbench.data.shard_loader import ShardBatchStream

        return ShardBatchStream(self.shards, decode=decode or type(self).decode, required=self.required,
                                collate=collate, batch_size=batch_size, on_corrupt=self.on_corrupt, **options)

    def __len__(self) -> int:
        """Number of samples in the set."""
        return int(self.manifest["num_samples"])

    def _iter_samples(self) -> Iterator[Any]:
        """Every sample in stored order; corrupt ones raise or are skipped and counted in ``skipped``."""
        self.skipped = SkipCounts()
        decode = type(self).decode
        for shard in self.shards:
            yield from iter_shard_samples(
                shard, decode, required=self.required, on_corrupt=self.on_corrupt, counts=self.skipped
            )
