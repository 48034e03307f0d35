"""Batches from a shard set for training: seeded shard shuffle, rank and worker splits, resampled epochs.

Two modes:

* **Pass over the data** (``resampled_len=None``): the shard list is shuffled with a seed shared by every rank
  (``shuffle_seed`` and ``epoch``), split by rank (``shards[rank::world_size]``) and then by DataLoader worker;
  every sample is seen once per epoch. Ranks may get different numbers of batches when shards are uneven, and
  fewer shards than ``world_size * num_workers`` is an error (a reader would get nothing).
* **Resampled** (``resampled_len=N``): every worker draws shards with replacement from the whole set with its
  own seeded generator (seed, epoch, rank, worker) and the rank yields exactly ``N`` full batches per epoch,
  so all ranks of a distributed job take the same number of steps whatever the shard sizes.

Batching happens inside the workers with a numpy collate (one copy into a preallocated batch array), so the
DataLoader moves whole batches and never collates per sample. Each worker reports the shard versions whose
checksums it verified, so the workers of the next epoch (forked from this process) do not hash them again.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from affbench.data.checksums import FileVersion, remember_verified, verified_versions
from affbench.data.shard_manifest import ShardInfo
from affbench.data.shard_payloads import CorruptShardError
from affbench.data.shard_reading import Decoder, SkipCounts, check_on_corrupt, iter_shard_samples, log

# A whole-shard reader: every sample of a shard at once, exactly as `decode` gives them sample by sample, or None
# when the shard is not one it reads (or is damaged): the shard is then read sample by sample, and what is wrong
# raises or is skipped under the corrupt-input policy.
ShardReader = Callable[[ShardInfo], "list[Any] | None"]

# After this many consecutive resampled shard draws without one good sample, the set is unusable.
_MAX_EMPTY_DRAWS_FACTOR = 4


@dataclass
class _WorkerReport:
    """Sent by each worker after its last batch: what the "skip" policy dropped, and the shard versions whose
    checksums the worker verified."""

    counts: SkipCounts
    verified: frozenset[FileVersion]


@dataclass
class _WorkerFailure:
    """Sent by a worker instead of raising, so the main process raises the worker's own error.

    A DataLoader re-raises a worker's exception as "Caught CorruptShardError in DataLoader worker process 0"
    plus a traceback text; the user needs the shard's path, which this carries intact.
    """

    shard: str
    message: str
    key: str | None

    def error(self) -> CorruptShardError:
        error = CorruptShardError(self.shard, "", key=self.key)
        error.args = (self.message,)
        return error


def _passthrough(item: Any) -> Any:
    return item


def _seeded_rng(*parts: Any) -> random.Random:
    # String seeds hash deterministically (sha512) across processes, unlike hash() of tuples.
    return random.Random(":".join(str(p) for p in parts))


def shuffled_shards(shards: Sequence[ShardInfo], shuffle_seed: int | None, epoch: int) -> list[ShardInfo]:
    """The shard order for one epoch: stored order without a seed, else a permutation shared by every rank."""
    order = list(shards)
    if shuffle_seed is not None:
        _seeded_rng("shards", shuffle_seed, epoch).shuffle(order)
    return order


def check_enough_shards(n_shards: int, world_size: int, num_workers: int, where: str) -> None:
    """Raise when a pass over the data would leave a rank or a worker without any shard."""
    readers = world_size * max(1, num_workers)
    if n_shards < readers:
        raise ValueError(
            f"{where}: {n_shards} shard(s) cannot feed {world_size} rank(s) x {max(1, num_workers)} worker(s) = "
            f"{readers} readers; write more, smaller shards (lower maxcount), use fewer workers, or pass "
            "resampled_len=<steps per epoch> to draw shards with replacement"
        )


class ShardBatchStream(IterableDataset):
    """A torch IterableDataset of collated batches from shards (see the module docstring for the modes)."""

    def __init__(
        self,
        shards: Sequence[ShardInfo],
        *,
        decode: Decoder,
        required: frozenset[str],
        collate: Callable[[list[Any]], dict],
        batch_size: int,
        shuffle_seed: int | None = None,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        resampled_len: int | None = None,
        shuffle_buffer: int = 64,
        drop_last: bool = False,
        on_corrupt: str = "raise",
        read_shard: ShardReader | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        if resampled_len is not None and resampled_len < 1:
            raise ValueError(f"resampled_len (batches per rank per epoch) must be >= 1, got {resampled_len}")
        if not shards:
            raise ValueError("no shards to read")
        self.shards = list(shards)
        self.decode, self.required, self.collate = decode, required, collate
        self.batch_size, self.drop_last = int(batch_size), drop_last
        self.shuffle_seed, self.epoch = shuffle_seed, int(epoch)
        self.rank, self.world_size = int(rank), int(world_size)
        self.resampled_len = resampled_len
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self.read_shard = read_shard
        self.counts = SkipCounts()

    def _worker(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def shards_for(self, worker: int, num_workers: int) -> list[ShardInfo]:
        """The shards one worker of this rank reads in a pass over the data (split by rank, then worker)."""
        order = shuffled_shards(self.shards, self.shuffle_seed, self.epoch)
        return order[self.rank :: self.world_size][worker::num_workers]

    def _samples(self, shards: Sequence[ShardInfo], counts: SkipCounts) -> Iterator[Any]:
        for shard in shards:
            whole = self.read_shard(shard) if self.read_shard is not None else None
            if whole is not None:
                yield from whole
                continue
            yield from iter_shard_samples(
                shard, self.decode, required=self.required, on_corrupt=self.on_corrupt, counts=counts
            )

    def _resampled_samples(self, rng: random.Random, counts: SkipCounts) -> Iterator[Any]:
        empty_draws = 0
        limit = _MAX_EMPTY_DRAWS_FACTOR * len(self.shards)
        while True:
            shard = self.shards[rng.randrange(len(self.shards))]
            got = False
            for sample in self._samples([shard], counts):
                got = True
                yield sample
            empty_draws = 0 if got else empty_draws + 1
            if empty_draws >= limit:
                raise ValueError(f"{empty_draws} shard draws in a row gave no readable sample ({counts.summary()})")

    def _shuffle(self, samples: Iterator[Any], rng: random.Random) -> Iterator[Any]:
        buffer: list[Any] = []
        for sample in samples:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            i = rng.randrange(len(buffer))
            yield buffer[i]
            buffer[i] = sample
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[Any]:
        worker, num_workers = self._worker()
        counts = SkipCounts()
        rng = _seeded_rng("samples", self.shuffle_seed, self.epoch, self.rank, worker)
        if self.resampled_len is None:
            samples = self._samples(self.shards_for(worker, num_workers), counts)
            quota = None
        else:
            samples = self._resampled_samples(rng, counts)
            quota = self.resampled_len // num_workers + (worker < self.resampled_len % num_workers)
        if self.shuffle_seed is not None or self.resampled_len is not None:
            samples = self._shuffle(samples, rng)
        batches = self._batches(samples)
        if quota is not None:
            batches = itertools.islice(batches, quota)
        in_worker = torch.utils.data.get_worker_info() is not None
        try:
            yield from batches
        except CorruptShardError as exc:
            if not in_worker:
                raise
            yield _WorkerFailure(exc.shard, str(exc), exc.key)
            return
        if not in_worker:
            self.counts.merge(counts)
        else:
            yield _WorkerReport(counts, verified_versions())

    def _batches(self, samples: Iterator[Any]) -> Iterator[dict]:
        batch: list[Any] = []
        for sample in samples:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate(batch)
                batch = []
        if batch and not self.drop_last and self.resampled_len is None:
            yield self.collate(batch)

    def batches_per_epoch(self, num_workers: int) -> int:
        """Batches this rank yields per epoch (exact for undamaged shards)."""
        if self.resampled_len is not None:
            return self.resampled_len
        total = 0
        for worker in range(max(1, num_workers)):
            n = sum(s.count for s in self.shards_for(worker, max(1, num_workers)))
            total += n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return total


class ShardLoader:
    """Iterable over batches of a ShardBatchStream through a DataLoader; ``skipped`` holds the skip counts.

    ``len(loader)`` is the number of batches per epoch; ``set_epoch(e)`` reshuffles for the next pass.
    """

    def __init__(self, stream: ShardBatchStream, *, num_workers: int = 0, pin_memory: bool = False) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.stream = stream
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.skipped = SkipCounts()

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration's shuffle and resampling seeds."""
        self.stream.epoch = int(epoch)

    def __len__(self) -> int:
        return self.stream.batches_per_epoch(self.num_workers)

    def __iter__(self) -> Iterator[dict]:
        self.skipped = SkipCounts()
        self.stream.counts = SkipCounts()
        loader = DataLoader(
            self.stream,
            batch_size=None,  # the stream yields whole batches
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=_passthrough,
            persistent_workers=False,
        )
        for item in loader:
            if isinstance(item, _WorkerReport):
                self.skipped.merge(item.counts)
                remember_verified(item.verified)
                continue
            if isinstance(item, _WorkerFailure):
                raise item.error()
            yield item
        self.skipped.merge(self.stream.counts)
        if self.skipped.total:
            log.warning("%s", self.skipped.summary())
