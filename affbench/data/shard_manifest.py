"""Shard-set manifests and the atomic writing of a shard set (used by frame shards and window shards).

A shard set is a directory of ``shard-NNNNNN.tar`` files plus ``manifest.json``. The set is written into a
hidden temporary sibling directory; every shard is fsynced as it is closed, the manifest is written last, and
only then is the directory swapped in (old set renamed away, new set renamed in, old set deleted). A crash
therefore leaves the previous complete set or nothing at the target path, never a mix, and because readers
refuse a directory without ``manifest.json`` a half-written set is never read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import affbench
from affbench.data.checksums import ALGORITHM, file_checksum
from affbench.data.stale_temporaries import remove_stale_temporaries, temporary_name
from affbench.output import MANIFEST, fsync_path, fsync_paths, read_json_object, to_jsonable
from affbench.run_lock import folder_lock

MANIFEST_NAME = MANIFEST  # the file whose presence marks a cache entry complete, too
SHARD_PATTERN = "shard-%06d.tar"
MANIFEST_VERSION = 1
# Value counts are kept per label column only while it looks categorical (EXPR class, AU 0/1, -1 invalid).
_MAX_DISTINCT_VALUES = 64

log = logging.getLogger("affbench.data.shards")


class ProvenanceMismatchError(ValueError):
    """A shard set was built from different inputs (backbone, weights, windowing ...) than the config expects."""

    def __init__(self, directory: str, field: str, found: Any, expected: Any) -> None:
        self.field, self.found, self.expected = field, found, expected
        super().__init__(
            f"shard set {directory}: provenance field '{field}' is {found!r} in {MANIFEST_NAME} but the config "
            f"expects {expected!r}; rebuild the shards for this config or point to the matching set"
        )


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a set as listed in its manifest."""

    path: str
    count: int
    size: int
    checksum: int | None = None  # None for sets written before checksums were recorded


def read_manifest(directory: str | os.PathLike, *, kind: str) -> dict:
    """The manifest of a complete shard set of ``kind`` ("frame_shards" or "window_shards"); raises otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"shard set {directory} does not exist")
    if not path.is_file():
        raise FileNotFoundError(
            f"shard set {directory} has no {MANIFEST_NAME}: it is incomplete (a crashed write) or not a shard set, "
            "and is never read; rebuild it with `affbench shard`"
        )
    try:
        manifest = read_json_object(path)
    except ValueError as exc:
        raise ValueError(f"{exc}; rebuild the shard set") from None
    found = manifest.get("format")
    if found != f"affbench.{kind}":
        raise ValueError(f"{path}: format is {found!r}, expected 'affbench.{kind}'")
    if not isinstance(manifest.get("shards"), list) or not isinstance(manifest.get("num_samples"), int):
        raise ValueError(f"{path}: lacks a 'shards' list or a 'num_samples' count; rebuild the shard set")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise ValueError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported (this affbench reads "
            f"{MANIFEST_VERSION}); rebuild the shards"
        )
    return manifest


def shard_infos(directory: str | os.PathLike, manifest: dict) -> list[ShardInfo]:
    """The shards a manifest lists, as absolute paths with their expected sample counts and byte sizes."""
    directory = Path(directory).resolve()
    infos = []
    for i, entry in enumerate(manifest.get("shards", [])):
        try:
            name = str(entry["name"])
            crc = entry.get(ALGORITHM)
            info = ShardInfo(str(directory / name), int(entry["count"]), int(entry["bytes"]),
                             None if crc is None else int(crc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{directory / MANIFEST_NAME}: shards[{i}] is malformed ({type(exc).__name__}: {exc}); "
                             "each entry needs name, count and bytes; rebuild the shard set") from None
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{directory / MANIFEST_NAME}: shard name {name!r} must be a plain file name")
        infos.append(info)
    return infos


def _lookup(data: Mapping, dotted: str) -> tuple[bool, Any]:
    current: Any = data
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def check_provenance(directory: str | os.PathLike, provenance: Mapping, expect: Mapping | None) -> None:
    """Raise ProvenanceMismatchError naming the first field of ``expect`` whose value differs from the manifest's.

    Keys may be dotted ("backbone.weights_id"); a mapping value is checked key by key (the manifest may hold
    more keys than expected); other values must be equal after JSON normalisation (tuples == lists).
    """
    if not expect:
        return

    def walk(prefix: str, expected: Any) -> None:
        if isinstance(expected, Mapping):
            for key, value in expected.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
            return
        present, found = _lookup(provenance, prefix)
        if not present:
            raise ProvenanceMismatchError(str(directory), prefix, "<missing>", to_jsonable(expected))
        if to_jsonable(found) != to_jsonable(expected):
            raise ProvenanceMismatchError(str(directory), prefix, found, to_jsonable(expected))

    walk("", dict(expect))


class LabelStatistics:
    """Streaming per-column label statistics over valid frames (counts, mean, std, min, max, value counts)."""

    def __init__(self) -> None:
        self.frames = 0
        self.valid_frames = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._values: list[dict[float, int] | None] = []

    def add(self, labels: np.ndarray, valid: np.ndarray) -> None:
        """Add one video's labels [n, L] and validity [n]."""
        labels = np.asarray(labels, dtype=np.float64)
        valid = np.asarray(valid, dtype=bool)
        self.frames += int(valid.shape[0])
        good = labels[valid]
        self.valid_frames += int(good.shape[0])
        if self._sum is None:
            width = labels.shape[1]
            self._sum, self._sumsq = np.zeros(width), np.zeros(width)
            self._min, self._max = np.full(width, np.inf), np.full(width, -np.inf)
            self._values = [{} for _ in range(width)]
        if labels.shape[1] != self._sum.shape[0]:
            raise ValueError(f"label width {labels.shape[1]} differs from earlier videos' {self._sum.shape[0]}")
        if good.shape[0] == 0:
            return
        self._sum += good.sum(axis=0)
        self._sumsq += np.square(good).sum(axis=0)
        self._min = np.minimum(self._min, good.min(axis=0))
        self._max = np.maximum(self._max, good.max(axis=0))
        for col, counts in enumerate(self._values):
            if counts is None:
                continue
            values, n = np.unique(good[:, col], return_counts=True)
            if not np.all(values == np.round(values)):
                self._values[col] = None
                continue
            for v, c in zip(values.tolist(), n.tolist(), strict=True):
                counts[v] = counts.get(v, 0) + c
            if len(counts) > _MAX_DISTINCT_VALUES:
                self._values[col] = None

    def to_dict(self) -> dict:
        """JSON-ready statistics; mean/std use population (1/N) statistics over valid frames."""
        out: dict[str, Any] = {"frames": self.frames, "valid_frames": self.valid_frames, "columns": []}
        if self._sum is None:
            return out
        n = max(self.valid_frames, 1)
        mean = self._sum / n
        std = np.sqrt(np.maximum(self._sumsq / n - mean**2, 0.0))
        for col in range(self._sum.shape[0]):
            entry: dict[str, Any] = {}
            if self.valid_frames:
                entry = {
                    "mean": float(mean[col]),
                    "std": float(std[col]),
                    "min": float(self._min[col]),
                    "max": float(self._max[col]),
                }
            counts = self._values[col]
            if counts is not None:
                entry["value_counts"] = {str(int(v)): c for v, c in sorted(counts.items())}
            out["columns"].append(entry)
        return out


class ShardSetWriter:
    """Write samples into a shard set atomically: ``write`` samples, then ``commit(manifest)``.

    Use as a context manager; leaving the block by an exception, or without ``commit``, deletes the temporary
    directory and leaves the target path exactly as it was.
    """

    def __init__(
        self, out_dir: str | os.PathLike, *, kind: str, maxcount: int, maxsize: float = 3e9
    ) -> None:
        if maxcount < 1:
            raise ValueError(f"maxcount must be >= 1 sample per shard, got {maxcount}")
        self.out_dir = Path(out_dir).absolute()
        self.kind = kind
        self.maxcount = int(maxcount)
        self.maxsize = float(maxsize)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._swap_lock():
            self._refuse_what_is_not_a_shard_set()
        remove_stale_temporaries(self.out_dir)  # left by writers that were killed
        self.tmp_dir = self.out_dir.parent / temporary_name(self.out_dir.name, "tmp")
        self.tmp_dir.mkdir()
        self._writer = None
        self._counts: dict[str, int] = {}
        self.total = 0
        self._done = False

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()

    def write(self, sample: dict[str, bytes | str]) -> None:
        """Write one sample: ``__key__`` plus extension -> bytes (already encoded: nothing is pickled)."""
        import webdataset as wds

        if self._writer is None:
            self._writer = wds.ShardWriter(
                str(self.tmp_dir / SHARD_PATTERN),
                maxcount=self.maxcount,
                maxsize=self.maxsize,
                verbose=0,
                encoder=False,
                mtime=0,  # fixed member times: identical inputs give identical shard bytes
            )
        self._writer.write(sample)
        name = os.path.basename(self._writer.fname)
        self._counts[name] = self._counts.get(name, 0) + 1
        self.total += 1

    def commit(self, manifest: Mapping[str, Any]) -> dict:
        """Close the shards, write the manifest last, fsync, and swap the set into place; returns the manifest."""
        if self.total == 0:
            raise ValueError(f"no samples were written for {self.out_dir}; refusing to create an empty shard set")
        self._writer.close()
        self._writer = None
        shards = [
            {"name": name, "count": count, "bytes": (self.tmp_dir / name).stat().st_size,
             ALGORITHM: file_checksum(self.tmp_dir / name)}
            for name, count in sorted(self._counts.items())
        ]
        body = {
            "format": f"affbench.{self.kind}",
            "format_version": MANIFEST_VERSION,
            "created_by": f"affbench {affbench.__version__}",
            **to_jsonable(dict(manifest)),
            "num_samples": self.total,
            "shards": shards,
        }
        path = self.tmp_dir / MANIFEST_NAME
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(body, fh, indent=2, sort_keys=True)
            fh.write("\n")
        # Every shard, the manifest and the folder's entries reach the disk before the set is swapped in, flushed
        # together (one commit of the file system instead of one per file, as when each shard was flushed on
        # closing it).
        fsync_paths([*(self.tmp_dir / name for name in sorted(self._counts)), path, self.tmp_dir])
        self._swap_in()
        self._done = True
        return body

    def _swap_lock(self) -> contextlib.AbstractContextManager:
        # Processes committing into one folder take turns: the two renames of a swap are not atomic together, so
        # the target is only looked at under this lock too (between the renames it is missing, or half-seen).
        # The lock is the parent directory itself (no lock file is left); a swap takes milliseconds.
        return folder_lock(self.out_dir.parent, what=f"shard sets in {self.out_dir.parent}", wait=True)

    def _refuse_what_is_not_a_shard_set(self) -> None:
        """Never replace a file, or a directory that is not a shard set: it may be someone's data."""
        if not self.out_dir.exists():
            return
        if not self.out_dir.is_dir():
            raise FileExistsError(f"{self.out_dir} exists and is not a directory; choose another --out")
        if any(self.out_dir.iterdir()) and not (self.out_dir / MANIFEST_NAME).is_file():
            raise FileExistsError(
                f"{self.out_dir} is a non-empty directory without {MANIFEST_NAME}; refusing to replace it"
            )

    def _swap_in(self) -> None:
        with self._swap_lock():
            self._refuse_what_is_not_a_shard_set()  # what appeared there since the writer started
            self._swap_in_locked()

    def _swap_in_locked(self) -> None:
        parent = self.out_dir.parent
        old = None
        if self.out_dir.exists():
            old = parent / temporary_name(self.out_dir.name, "old")
            os.rename(self.out_dir, old)
        try:
            os.rename(self.tmp_dir, self.out_dir)
        except BaseException:
            if old is not None:
                os.rename(old, self.out_dir)  # put the previous complete set back
            raise
        fsync_path(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Discard everything written so far; the target path is untouched."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # the temp dir is deleted below anyway
                log.debug("closing an aborted shard writer failed", exc_info=True)
            self._writer = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self._done = True
