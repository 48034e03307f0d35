"""Window shards: per-frame features of each video cut into windows, for temporal training and evaluation.

One sample per window, key ``"{video}/{start:07d}"``:

=============== ================== ==========================================================
``features.npy`` float16 [w, D]     per-frame features (zeros on padding and masked frames)
``labels.npy``   float32 [w, L]     labels as in the annotation file (zeros on padding)
``valid.npy``    bool [w]           label usable
``mask.npy``     bool [w]           real frame that has a feature
``frames.npy``   int32 [w]          1-based frame id, 0 = padding past the video's end
``json``         {video, start, n_frames}  ``start`` is the 0-based first frame
=============== ================== ==========================================================

Batches from ``WindowShards.loader`` keep features float16 on the CPU (half the bytes to read, copy and move
to the GPU); the model casts after the transfer (``batch["features"].to(device).float()`` or autocast).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from affbench.data import WINDOW_MAXCOUNT
from affbench.data.records import VideoRecord
from affbench.data.shard_loader import ShardLoader, check_enough_shards
from affbench.data.shard_manifest import (
    LabelStatistics,
    ShardSetWriter,
)
from affbench.data.shard_payloads import decode_json, decode_npy, encode_json, encode_npy
from affbench.data.shard_set import ShardSet
from affbench.data.windows import window_starts

KIND = "window_shards"
ARRAY_FIELDS = {
    "features": np.dtype(np.float16),
    "labels": np.dtype(np.float32),
    "valid": np.dtype(bool),
    "mask": np.dtype(bool),
    "frames": np.dtype(np.int32),
}
_TORCH_DTYPES = {
    "features": torch.float16,
    "labels": torch.float32,
    "valid": torch.bool,
    "mask": torch.bool,
    "frames": torch.int32,
}
REQUIRED = frozenset([f"{name}.npy" for name in ARRAY_FIELDS] + ["json"])
DEFAULT_MAXCOUNT = WINDOW_MAXCOUNT


def _check_key_part(video: str) -> None:
    # The webdataset key ends at the first dot of the base name; a dot in a video name would split its key.
    if not video or "." in video or video.startswith("/") or "\\" in video:
        raise ValueError(f"video name {video!r} cannot be a shard key: it must be non-empty with no '.' or '\\'")


def cut_windows(
    record: VideoRecord, features: np.ndarray, feature_mask: np.ndarray, *, window: int, stride: int,
    tails: str = "cover",
) -> Iterator[dict[str, Any]]:
    """The window samples (numpy arrays + metadata) of one video, in start order (see `window_starts` for tails)."""
    n = record.n_frames
    features = np.asarray(features)
    feature_mask = np.asarray(feature_mask, dtype=bool)
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"video '{record.video}': features must be [{n}, D] (one row per frame), got {features.shape}")
    if feature_mask.shape != (n,):
        raise ValueError(f"video '{record.video}': feature_mask must be [{n}], got {feature_mask.shape}")
    with np.errstate(over="ignore"):  # overflow is reported below, naming the frame
        half = features.astype(np.float16)
    overflow = ~np.isfinite(half).all(axis=1) & np.isfinite(features).all(axis=1)
    if overflow.any():
        frame = int(np.flatnonzero(overflow)[0]) + 1
        raise ValueError(f"video '{record.video}': frame {frame} has features beyond float16 range (|x| > 65504)")
    half[~feature_mask] = 0  # masked frames carry no feature: never leak whatever the extractor left there
    labels = np.asarray(record.labels, dtype=np.float32)
    valid = np.asarray(record.valid, dtype=bool)
    dim, label_dim = half.shape[1], labels.shape[1]
    for start in window_starts(n, window, stride, tails=tails):
        stop = min(start + window, n)
        real = stop - start
        sample = {
            "features": np.zeros((window, dim), np.float16),
            "labels": np.zeros((window, label_dim), np.float32),
            "valid": np.zeros(window, bool),
            "mask": np.zeros(window, bool),
            "frames": np.zeros(window, np.int32),
        }
        sample["features"][:real] = half[start:stop]
        sample["labels"][:real] = labels[start:stop]
        sample["valid"][:real] = valid[start:stop]
        sample["mask"][:real] = feature_mask[start:stop]
        sample["frames"][:real] = np.arange(start + 1, stop + 1, dtype=np.int32)
        yield {"video": record.video, "start": start, "n_frames": n, **sample}


def write_window_shards(
    out_dir: str | os.PathLike,
    videos: Iterable[tuple[VideoRecord, np.ndarray, np.ndarray]],
    *,
    window: int,
    stride: int,
    manifest_extra: Mapping[str, Any],
    maxcount: int = DEFAULT_MAXCOUNT,
    quiet: bool = False,
    desc: str = "window shards",
    tails: str = "cover",
    repeats: Mapping[str, int] | None = None,
) -> dict:
    """Cut each (record, features[n, D], feature_mask[n]) into windows and write an atomic shard set.

    ``repeats`` (video -> copies per epoch, default 1) lets a video be given again, up to that many times in
    all; each copy's windows are written under their own keys (a training mix that repeats some videos, see
    affbench.multitask.epoch_repeats). Give the copies in later passes over the videos, so the loader's shuffle
    does not meet them side by side.

    ``manifest_extra`` is the provenance (dataset, task, backbone, weights hash, preprocessing, missing-face
    policy ...); it is stored under ``provenance`` together with window, stride, feature_dim and label_dim.
    ``desc`` names the progress bar by what is written (e.g. ``window shards va fold 0 train``). Returns the
    manifest.
    """
    window_starts(1, window, stride)  # validate window/stride before any work
    stats = LabelStatistics()
    copies: dict[str, int] = {}
    n_videos = n_frames = n_masked = 0
    dims: dict[str, int] = {}
    with ShardSetWriter(out_dir, kind=KIND, maxcount=maxcount) as writer:
        bar = tqdm(videos, desc=desc, unit="video", disable=quiet)
        for record, features, feature_mask in bar:
            _check_key_part(record.video)
            copy = copies.get(record.video, 0)
            allowed = int((repeats or {}).get(record.video, 1))
            if copy >= allowed:
                raise ValueError(f"video '{record.video}' is given {copy + 1} times; it may appear "
                                 f"{'once' if allowed == 1 else f'{allowed} times'}")
            copies[record.video] = copy + 1
            for name, value in (("feature_dim", np.shape(features)[-1]), ("label_dim", record.labels.shape[1])):
                if dims.setdefault(name, int(value)) != int(value):
                    raise ValueError(f"video '{record.video}': {name} {value} differs from earlier videos' {dims[name]}")
            for sample in cut_windows(record, features, feature_mask, window=window, stride=stride, tails=tails):
                writer.write(encode_window(sample, copy=copy))
            if copy:  # a repeat adds windows, not videos, frames or label statistics
                continue
            n_videos += 1
            n_frames += record.n_frames
            n_masked += int((~np.asarray(feature_mask, dtype=bool)).sum())
            stats.add(record.labels, record.valid)
        if writer.total == 0 and n_videos and tails == "drop":
            raise ValueError(f"{out_dir}: no window to write: every video is shorter than the window ({window} "
                             "frames) and tails are dropped; use data.tails: cover or a shorter data.window")
        provenance = {**dict(manifest_extra), "window": int(window), "stride": int(stride), "tails": tails, **dims}
        return writer.commit(
            {
                "window": int(window),
                "stride": int(stride),
                **dims,
                "counts": {
                    "videos": n_videos,
                    "windows": writer.total,
                    "frames": n_frames,
                    "frames_without_feature": n_masked,
                    **({"repeated_videos": sum(c > 1 for c in copies.values())} if repeats else {}),
                },
                "label_stats": stats.to_dict(),
                "provenance": provenance,
            }
        )


def encode_window(sample: Mapping[str, Any], *, copy: int = 0) -> dict[str, bytes | str]:
    """The tar members of one window sample (arrays as .npy with explicit dtypes, metadata as JSON); a repeated
    video's `copy` > 0 keys its windows apart."""
    key = f"{sample['video']}/{int(sample['start']):07d}" + (f"_{copy}" if copy else "")
    out: dict[str, bytes | str] = {"__key__": key}
    for name, dtype in ARRAY_FIELDS.items():
        out[f"{name}.npy"] = encode_npy(np.asarray(sample[name], dtype=dtype))
    out["json"] = encode_json({"video": sample["video"], "start": int(sample["start"]), "n_frames": int(sample["n_frames"])})
    return out


def decode_window(members: dict[str, memoryview], key: str) -> dict[str, Any]:
    """A window sample from its tar members; raises ValueError naming the bad field."""
    meta = decode_json(members["json"], "json")
    for field in ("video", "start", "n_frames"):
        if field not in meta:
            raise ValueError(f"json lacks '{field}'")
    sample: dict[str, Any] = {"key": key, "video": str(meta["video"]), "start": int(meta["start"]), "n_frames": int(meta["n_frames"])}
    width = None
    for name, dtype in ARRAY_FIELDS.items():
        array = decode_npy(members[f"{name}.npy"], f"{name}.npy")
        if array.dtype != dtype:
            raise ValueError(f"{name}.npy has dtype {array.dtype}, expected {dtype}")
        expected_ndim = 2 if name in ("features", "labels") else 1
        if array.ndim != expected_ndim or (width is not None and array.shape[0] != width):
            raise ValueError(f"{name}.npy has shape {array.shape}, inconsistent with a [{width or 'w'}{', *' if expected_ndim == 2 else ''}] window")
        width = array.shape[0]
        sample[name] = array
    return sample


def _collate_windows(samples: list[dict[str, Any]]) -> dict[str, Any]:
    # One copy per array, from the mapped shard straight into the batch tensor. Inside a DataLoader worker the
    # batch is allocated in shared memory, so handing it to the main process copies nothing more.
    shared = torch.utils.data.get_worker_info() is not None
    batch: dict[str, Any] = {}
    for name in ARRAY_FIELDS:
        first = samples[0][name]
        out = torch.empty((len(samples), *first.shape), dtype=_TORCH_DTYPES[name])
        if shared:
            out.share_memory_()
        view = out.numpy()
        for i, sample in enumerate(samples):
            if sample[name].shape != first.shape:
                raise ValueError(
                    f"window '{sample['key']}' has {name} {sample[name].shape}, others in the batch {first.shape}"
                )
            view[i] = sample[name]
        batch[name] = out
    batch["video"] = [s["video"] for s in samples]
    batch["key"] = [s["key"] for s in samples]
    batch["start"] = torch.tensor([s["start"] for s in samples], dtype=torch.int64)
    batch["n_frames"] = torch.tensor([s["n_frames"] for s in samples], dtype=torch.int64)
    return batch


class WindowShards(ShardSet):
    """Reader of a window shard set; refuses sets whose provenance differs from ``expect``.

    ``on_corrupt="raise"`` (default) fails on the first corrupt shard or sample, naming it; ``"skip"`` drops
    it, logs a warning and counts it in ``skipped`` (for ``iter_windows``) or ``loader(...).skipped``.
    """

    kind = KIND
    required = REQUIRED
    decode = staticmethod(decode_window)

    @property
    def window(self) -> int:
        return int(self.manifest["window"])

    @property
    def stride(self) -> int:
        return int(self.manifest["stride"])

    @property
    def feature_dim(self) -> int:
        return int(self.manifest["feature_dim"])

    @property
    def label_dim(self) -> int:
        return int(self.manifest["label_dim"])

    def iter_windows(self) -> Iterator[dict[str, Any]]:
        """Every window in stored order (videos sorted as written, starts increasing): dicts of numpy arrays."""
        return self._iter_samples()

    def loader(
        self,
        batch_size: int,
        *,
        shuffle_seed: int | None = None,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        resampled_len: int | None = None,
        pin_memory: bool = False,
        shuffle_buffer: int = 64,
        drop_last: bool = False,
    ) -> ShardLoader:
        """Batches {features f16 [B,w,D], labels f32 [B,w,L], valid/mask bool [B,w], frames i32 [B,w], start,
        n_frames i64 [B], video/key list}; ``resampled_len`` = fixed batches per rank per epoch."""
        if resampled_len is None:
            check_enough_shards(len(self.shards), world_size, num_workers, f"window shards {self.directory}")
        stream = self.batch_stream(collate=_collate_windows, batch_size=batch_size, shuffle_seed=shuffle_seed,
                                   epoch=epoch, rank=rank, world_size=world_size, resampled_len=resampled_len,
                                   shuffle_buffer=shuffle_buffer, drop_last=drop_last)
        return ShardLoader(stream, num_workers=num_workers, pin_memory=pin_memory)


# -- the stage that cuts a fold's window shards from its features ---------------------------------------------


def build_window_shards(
    config: Mapping[str, Any], inputs: Any, features: Any, split: str, *, quiet: bool = False,
    records: Sequence[VideoRecord] | None = None, selection: Mapping[str, Any] | None = None,
    repeats: Mapping[str, int] | None = None,
) -> tuple[Path, dict]:
    """The window-shard set of one split of the fold (stage 2's `features` of the `inputs`' records, cut as the
    config's data section says), built once per content key in the stage cache.

    `records` default to the fold's side named `split` ("train" | "validation"); other splits ("selection",
    "test") pass theirs. `selection` (how held-out training videos were drawn) joins the key and the provenance
    of the splits it shaped. `repeats` (video -> copies per epoch) writes some videos' windows more than once
    (a multi-task training mix, affbench.multitask.epoch_repeats); it joins the key.
    """
    from affbench.stages import feature_cache as cache
    from affbench.stages.extract import video_features

    if records is None:
        records = {"train": inputs.train, "validation": inputs.validation}[split]
    data = config["data"]
    policy = data["missing_faces"]
    fold_side = {k: v for k, v in inputs.fold_info.items() if k not in ("train", "validation", "selection")}
    shaped_by = {} if selection is None else {"selection": dict(selection)}
    # Only training windows may drop tails: a scored split must cover every frame.
    tails = data["tails"] if split == "train" else "cover"
    dropped = {} if tails == "cover" else {"tails": tails}  # keys of covering sets stay what they were
    repeated = {"repeats": dict(sorted(repeats.items()))} if repeats else {}
    key = cache.stage_key("windows", features=features.key, task=config["task"], split=split,
                          fold=fold_side, videos=[r.video for r in records], window=int(data["window"]),
                          stride=int(data["stride"]), missing_faces=policy,
                          stamps=inputs.stamps_digest(records), **shaped_by, **dropped, **repeated)
    directory = cache.stage_dir("windows", key)
    manifest = cache.read_manifest(directory)
    if manifest is not None:
        return directory, manifest
    if not records:
        raise ValueError(f"task '{inputs.task}' fold {inputs.fold}: the {split} split has no video")
    without_face = sum(int((~r.has_image).sum()) for r in records)
    extra = {
        "dataset": inputs.dataset_provenance,
        "task": config["task"],
        "split": split,
        "fold": fold_side,
        "videos": [r.video for r in records],
        "backbone": features.identity,
        "feature_key": features.key,
        "finetune": None if features.finetune is None else {
            "key": features.finetune["key"], "weights_id": features.finetune["weights_id"]},
        "missing_faces": {"policy": policy, "frames_without_face": without_face,
                          "frames": sum(r.n_frames for r in records)},
        **shaped_by,
        **repeated,
    }

    def windows() -> Iterator[tuple[VideoRecord, np.ndarray, np.ndarray]]:
        for record in repeated_passes(records, repeats):
            feats, mask = video_features(features, record, policy)
            yield record, feats, mask

    manifest = write_window_shards(directory, windows(), window=int(data["window"]), stride=int(data["stride"]),
                                   manifest_extra=extra, maxcount=_windows_maxcount(records, data), quiet=quiet,
                                   desc=f"window shards {inputs.task} fold {inputs.fold} {split}", tails=tails,
                                   repeats=repeats)
    return directory, manifest


def repeated_passes(records: Sequence[VideoRecord], repeats: Mapping[str, int] | None) -> Iterator[VideoRecord]:
    """The records in one pass per copy, a video in as many passes as its repeat (default 1): a repeated video's
    copies lie apart in the shards, so the loader's shuffle does not meet them side by side."""
    repeats = repeats or {}
    for copy in range(max(repeats.values(), default=1)):
        yield from (record for record in records if copy < repeats.get(record.video, 1))


def _windows_maxcount(records: Sequence[VideoRecord], data: Mapping[str, Any]) -> int:
    """Windows per shard: the default size, but small sets still get a few shards for loader workers."""
    n_windows = sum(len(window_starts(r.n_frames, int(data["window"]), int(data["stride"]))) for r in records)
    return max(1, min(DEFAULT_MAXCOUNT, -(-n_windows // 4)))
