"""What the shared stages read: the dataset, one fold's train/validation records, and cached frame shards.

Folds are built per task over the official train and validation videos together (grouped by source video);
``fold=None`` means the official split. Frame shards are written from dataset records once per content key
and reused by every later fine-tune or extraction that asks for the same frames.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affbench import task_contract as contract
from affbench.core.config import ConfigError
from affbench.data.folds import FoldError, hold_out_sources
from affbench.data.image_stamps import record_stamps, stamps_digest
from affbench.data.record_checks import check_labels, faceless_videos
from affbench.data.records import VideoRecord
from affbench.output import to_jsonable
from affbench.stages import feature_cache as cache

# Small enough that a few DataLoader workers each get a shard on small sets; ~50 MB on Aff-Wild2.
MAX_FRAMES_PER_SHARD = 10000
MIN_SHARDS = 4

_datasets: dict[str, Any] = {}
_datasets_lock = threading.Lock()


@dataclasses.dataclass
class StageInputs:
    """One task's records of one fold, with the dataset they came from and its provenance."""

    dataset: Any
    dataset_provenance: dict
    task: str
    fold: int | None
    train: list[VideoRecord]
    validation: list[VideoRecord]
    fold_info: dict
    # video -> stamps of the images of this task's record of it (affbench.data.image_stamps), taken when first
    # asked for: a caller that only reads the records (another task's rows sharing a fine-tune) stats nothing.
    stamps: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # A multi-task model's inputs (affbench.multitask): each joined task's own inputs, which its records merge.
    parts: list[StageInputs] = dataclasses.field(default_factory=list)

    def _own_stamps(self, video: str) -> np.ndarray | None:
        if video not in self.stamps:
            own = next((r for r in (*self.train, *self.validation) if r.video == video), None)
            if own is None:
                return None
            self.stamps.update(record_stamps(self.dataset.image_root, [own]))
        return self.stamps[video]

    def stamps_of(self, records: Sequence[VideoRecord]) -> dict[str, np.ndarray]:
        """{video: stamps of its frames' images} for exactly these records.

        Records of this task's videos reuse the stamps of this task's record of the video; others (another task's
        records, merged multi-task records, unlabelled test videos) are stamped from their own images.
        """
        out = {}
        for record in records:
            known = self._own_stamps(record.video)
            if known is not None and len(known) == record.n_frames:
                stamps = known.copy()
                stamps[~record.has_image] = 0  # a frame left out of this record stamps as a frame without image
            else:
                stamps = record_stamps(self.dataset.image_root, [record])[record.video]
            out[record.video] = stamps
        return out

    def stamps_digest(self, records: Sequence[VideoRecord]) -> str:
        """Digest of the image stamps of `records`: part of every cache key built from their images."""
        return stamps_digest(self.stamps_of(records), [r.video for r in records])

    @property
    def records(self) -> list[VideoRecord]:
        """Train and validation records together, sorted by video name."""
        return sorted([*self.train, *self.validation], key=lambda r: r.video)


def task_name(config: Mapping[str, Any]) -> str:
    """The config's task name."""
    return config["task"]["name"]


def open_dataset(spec: Mapping[str, Any]) -> Any:
    """The dataset plugin object for a {name, options} spec, built once per process and spec."""
    import affbench

    key = cache.stable_hash(spec)
    with _datasets_lock:
        if key not in _datasets:
            _datasets[key] = affbench.create("dataset", spec["name"], **spec["options"])
        return _datasets[key]


def dataset_provenance(dataset: Any) -> dict:
    """The dataset's provenance (for every task), as plain JSON values."""
    return to_jsonable(dataset.provenance(), other=str)


def dataset_annotation_set(dataset: Any, dataset_name: str, task: Any) -> str:
    """The annotation set `task` reads its labels from (affbench.task_contract.annotation), checked against the
    sets the dataset says it has (its ``tasks()``; a dataset that does not say is asked directly)."""
    wanted = contract.annotation(task)
    has = list(dataset.tasks()) if callable(getattr(dataset, "tasks", None)) else None
    if has is not None and wanted not in has:
        reads = "" if wanted == task.name else f" (task '{task.name}' reads it)"
        raise ValueError(f"dataset '{dataset_name}' has no annotation set '{wanted}'{reads}; it has: {', '.join(has)}")
    return wanted


def load_stage_inputs(config: Mapping[str, Any], fold: int | None, *, task: str | None = None) -> StageInputs:
    """The config's dataset and task records split into train/validation for `fold` (None: official split).

    A task reads the labels of one annotation set of the dataset, as they are or derived from them (the task
    contract's ``annotation`` and ``derive_labels``). `task` overrides the config's task (a shared fine-tune reads
    several tasks' records of one fold). K-fold splits are shared by every annotation set the dataset has (see
    `affbench.data.folds.task_folds`): a task that derives its labels from a set gets that set's folds.
    """
    from affbench.data.folds import split_records, task_folds
    from affbench.multitask import joined_tasks

    if task is None and (parts := joined_tasks(config)) is not None:  # a multi-task model reads every part's
        return merged_stage_inputs(config, fold, parts)
    data = config["data"]
    dataset = open_dataset(data["dataset"])
    task = task or task_name(config)
    dataset_name = data["dataset"]["name"]
    reads = contract.task_named(task)
    annotation_set = dataset_annotation_set(dataset, dataset_name, reads)
    official_train = list(dataset.videos(annotation_set, "train"))
    official_val = list(dataset.videos(annotation_set, "validation"))
    check_labels([*official_train, *official_val], annotation_set, dataset_name)
    faceless = faceless_videos([*official_train, *official_val], dataset_name, task)
    official_train = [contract.task_record(reads, r) for r in official_train]
    official_val = [contract.task_record(reads, r) for r in official_val]
    if fold is None:
        train, validation = official_train, official_val
        info: dict[str, Any] = {"fold": None, "split": "official"}
    else:
        k = int(data["folds"])
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < k:
            raise ValueError(f"fold must be an integer in 0..{k - 1} (data.folds = {k}) or None, got {fold!r}")
        records = sorted([*official_train, *official_val], key=lambda r: r.video)
        folds, tasks = task_folds(dataset, annotation_set, k=k, seed=int(data["fold_seed"]))
        train, validation = split_records(records, folds[fold])
        info = {"fold": fold, "k": k, "seed": int(data["fold_seed"]), "split_over_tasks": tasks}
    info["videos_without_images"] = faceless
    info["train"] = [r.video for r in train]
    info["validation"] = [r.video for r in validation]
    return StageInputs(dataset, dataset_provenance(dataset), task, fold, train, validation, info)


def merged_stage_inputs(config: Mapping[str, Any], fold: int | None, specs: Sequence[Mapping[str, Any]]) -> StageInputs:
    """One StageInputs for a multi-task model: per split, every part's records of it merged per video.

    Train is the union of the parts' training videos, validation the union of their validation videos; a part's
    labels of a video are merged into a split only where that part puts the video on that side, so each part
    is scored on exactly its own validation frames. K-fold splits are shared by the tasks, so a video lies on
    one side for all; on an official split a video can train one part and validate another. Under
    ``train.select: inner`` the selection slice is the union of the parts' slices (see
    selection_spec), which stage 1 never trains on.
    """
    from affbench.multitask import NAME, MultiTask

    per_part = [load_stage_inputs(config, fold, task=s["name"]) for s in specs]
    layout = MultiTask([dict(s) for s in specs]).layout
    train = layout.merge([{r.video: r for r in p.train} for p in per_part])
    validation = layout.merge([{r.video: r for r in p.validation} for p in per_part])
    info = {k: v for k, v in per_part[0].fold_info.items() if k not in ("train", "validation",
                                                                           "videos_without_images")}
    info["videos_without_images"] = sorted({v for p in per_part for v in p.fold_info["videos_without_images"]})
    info["train"] = [r.video for r in train]
    info["validation"] = [r.video for r in validation]
    first = per_part[0]
    return StageInputs(first.dataset, first.dataset_provenance, NAME, fold, train, validation, info, parts=per_part)


def select_frames(record: VideoRecord, keep: np.ndarray) -> VideoRecord:
    """A copy of `record` whose images are blanked where `keep` is False (those frames get no frame sample)."""
    images = [img if k else "" for img, k in zip(record.images, keep, strict=True)]
    return VideoRecord(record.video, record.source, images, record.labels, record.valid)


def frames_maxcount(n_images: int) -> int:
    """Samples per frame shard: at most MAX_FRAMES_PER_SHARD, and at least MIN_SHARDS shards when possible."""
    return max(1, min(MAX_FRAMES_PER_SHARD, math.ceil(n_images / MIN_SHARDS)))


def frame_shards_label(task: str, selection: Mapping[str, Any]) -> str:
    """The progress bar's name for a frame-shard set: what it is for, e.g. 'frame shards va+au for finetune
    fold 0' (never its cache key)."""
    fold = selection.get("fold")
    if isinstance(fold, Mapping):  # the fold's description (fine-tuning): its index names it
        fold = fold.get("fold")
    purpose = " ".join(p for p in (selection.get("stage"), None if fold is None else f"fold {fold}") if p)
    return f"frame shards {task}" + (f" for {purpose}" if purpose else "")


def ensure_frame_shards(
    records: Sequence[VideoRecord],
    dataset: Any,
    *,
    task: str,
    provenance: Mapping[str, Any],
    selection: Mapping[str, Any],
    stamps: str,
    preprocess: Any,
    quiet: bool = False,
) -> Path:
    """The frame-shard set of `records` for a backbone with input `preprocess` (cached by dataset provenance,
    task, videos, `selection` and the images' `stamps` digest, so a replaced image gives a new set).

    A small backbone's set keeps decoded crops at its input size (``frame_shards.decoded_crops``): their size and
    resize mode join the key. Sets of JPEG bytes serve every larger backbone, and their keys stay what they were.
    """
    from affbench.data.frame_shards import crops_description, decoded_crops, write_frame_shards

    images = [(r.video, tuple(r.images)) for r in records]
    crops = decoded_crops(preprocess)
    stored = {} if crops is None else {"crops": crops_description(crops)}
    key = cache.stage_key("frames", dataset=provenance, task=task, selection=selection,
                          images=cache.stable_hash(images, length=64), stamps=stamps, **stored)
    directory = cache.stage_dir("frames", key)
    if cache.read_manifest(directory) is None:
        n_images = sum(int(r.has_image.sum()) for r in records)
        if n_images == 0:
            raise ValueError(f"task '{task}': the selected videos hold no face image to write as frame shards")
        write_frame_shards(records, dataset.image_root, directory, task=task, dataset_provenance=provenance,
                           maxcount=frames_maxcount(n_images), quiet=quiet,
                           desc=frame_shards_label(task, selection), crops=crops)
    return directory


def selection_spec(config: Mapping[str, Any], inputs: StageInputs) -> dict | None:
    """How the selection split is drawn from the fold's training videos (None unless train.select is inner)."""
    train = config["train"]
    if train["select"] != "inner":
        return None
    if inputs.parts:  # a multi-task model holds out every slice its tasks hold out, none of which stage 1 saw
        slices = [selection_spec(config, part)["videos"] for part in inputs.parts]
        return {"fraction": float(train["select_fraction"]), "seed": int(train["select_seed"]),
                "videos": sorted(set().union(*slices))}
    try:
        _, held = hold_out_sources(inputs.train, float(train["select_fraction"]), int(train["select_seed"]))
    except FoldError as exc:
        where = config.where("train.select") if hasattr(config, "where") else "config"
        raise ConfigError(f"{where}: train.select: inner: task '{inputs.task}' fold {inputs.fold}: {exc}; set "
                          "train.select to last or validation") from None
    return {"fraction": float(train["select_fraction"]), "seed": int(train["select_seed"]),
            "videos": [r.video for r in held]}
