"""Stage 2: one feature per face image with a (pretrained or fine-tuned) backbone, cached per video, then cut
into window shards.

Per-video features are cached under ``<cache>/features/<key>/`` with the key of (dataset provenance,
backbone name + options, weights identity, preprocessing): a request whose features exist is never
recomputed, whichever config, task or suite asks. Extraction is resumable: every finished video is written
atomically as it completes (by a thread beside the frame loop), and a rerun extracts only the videos still
missing (their frames are skipped before JPEG decoding).

Window shards are built from the cached features per (feature key, task, split and fold videos, window,
stride, missing-face policy) under ``<cache>/windows/<key>/``; a complete set is reused as is.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from affbench.data.records import VideoRecord
from affbench.devices import resolve_device
from affbench.output import write_manifest
from affbench.stages import distributed
from affbench.stages import feature_cache as cache
from affbench.stages.finetune import (
    backbone_threads,
    build_backbone,
    compiled,
    finetune,
    finetuned_weights_id,
    load_finetuned,
    seeded_backbone,
)
from affbench.stages.frame_batches import batch_to_input, frame_batches, image_model_on
from affbench.stages.stage_inputs import StageInputs, ensure_frame_shards, load_stage_inputs

IDENTITY_FILE = "identity.json"


@dataclasses.dataclass
class FeatureSet:
    """Per-video features of one backbone identity: where they are and what produced them."""

    directory: Path
    key: str
    identity: dict
    feature_dim: int
    extracted_frames: int  # frames this call ran through the backbone (0 on a full cache hit)
    finetune: dict | None  # the fine-tune manifest when the backbone was fine-tuned


def prepare_backbone(config: Mapping[str, Any], inputs: StageInputs, *, quiet: bool = False
                     ) -> tuple[nn.Module, dict, dict | None]:
    """(backbone, identity, fine-tune manifest): fine-tuned on the fold when finetune.enabled, else as built."""
    if config.get("backbone") is None:
        raise ValueError("extract: config key backbone is null; stage 2 needs an image backbone")
    spec = config["backbone"]
    if not config["finetune"]["enabled"]:
        backbone = build_backbone(spec)
        return backbone, cache.backbone_identity(spec, str(backbone.weights_id), backbone.preprocess), None
    # One build serves both stages: stage 1 computes its cache key from it and trains it (or finds its weights
    # cached); the weights it saved are loaded back, so a trained and a reused fine-tune extract alike.
    backbone = seeded_backbone(config)
    result = finetune(config, fold=inputs.fold, quiet=quiet, inputs=inputs, backbone=backbone)
    load_finetuned(backbone, result.weights_path)
    weights_id = finetuned_weights_id(result.weights_path)
    return backbone, cache.backbone_identity(spec, weights_id, backbone.preprocess), result.manifest


def has_features(directory: Path, record: VideoRecord, stamps: np.ndarray) -> bool:
    """Whether the cache holds a feature for every face image of `record`, extracted from the image whose
    stamp (size, mtime or content) is `stamps` today: a replaced image is extracted again."""
    needed = {image: tuple(stamp) for image, stamp in zip(record.images, stamps.tolist(), strict=True) if image}
    if not needed:
        return True
    cached = cache.load_video_images(directory, record.video)
    return cached is not None and all(cached.get(image) == stamp for image, stamp in needed.items())


def cached_rows(directory: Path, record: VideoRecord) -> np.ndarray | None:
    """[n, D] features of a record's frames (zeros where no image) from the cache, or None if any is missing."""
    stored = cache.load_video_features(directory, record.video)
    if stored is None:
        return None
    images, features, _ = stored
    row_of = {image: i for i, image in enumerate(images)}
    out = np.zeros((record.n_frames, features.shape[1]), dtype=np.float16)
    for i, image in enumerate(record.images):
        if not image:
            continue
        row = row_of.get(image)
        if row is None:
            return None
        out[i] = features[row]
    return out


def extract_features(config: Mapping[str, Any], *, fold: int | None, quiet: bool = False,
                     inputs: StageInputs | None = None, records: Sequence[VideoRecord] | None = None) -> FeatureSet:
    """Per-video features of every video of the config's task (both sides of `fold`), reusing the cache.

    `records` extracts other videos of the same dataset instead (e.g. the unlabelled test videos) with the same
    backbone, fine-tuned on the same fold, into the same cache.
    """
    distributed.init_distributed(config["device"])  # under torchrun the ranks share the videos out
    inputs = inputs or load_stage_inputs(config, fold)
    backbone, identity, tuned = prepare_backbone(config, inputs, quiet=quiet)
    key = cache.feature_key(inputs.dataset_provenance, identity)
    directory = cache.stage_dir("features", key)
    records = inputs.records if records is None else list(records)
    stamps = inputs.stamps_of(records)
    # Under torchrun every rank sees the same cache here (nothing is written before the barrier of main_first).
    missing = [r for r in records if not has_features(directory, r, stamps[r.video])]
    with distributed.main_first():
        if distributed.rank() == 0 and cache.read_manifest(directory) is None:  # what the per-video files are
            write_manifest(directory, {"stage": "features", "key": key, "identity": identity,
                                             "dataset": inputs.dataset_provenance,
                                             "feature_dim": int(backbone.out_dim)})
    extracted = 0
    if missing:
        # Each rank extracts its own videos (disjoint, balanced by frames); all have been written after the barrier.
        mine = distributed.share_out(missing, weight=lambda r: int(r.has_image.sum()))
        extracted = extract_videos(config, inputs, backbone, directory, mine, quiet=quiet, shard_records=records)
        extracted = int(distributed.all_reduce_sum([extracted], resolve_device(config["device"]))[0])
        distributed.barrier()
    return FeatureSet(directory, key, identity, int(backbone.out_dim), extracted, tuned)


def extract_videos(config: Mapping[str, Any], inputs: StageInputs, backbone: nn.Module, directory: Path,
                   missing: Sequence[VideoRecord], *, quiet: bool,
                   shard_records: Sequence[VideoRecord] | None = None) -> int:
    """Features of every face image of `missing` videos into `directory` (one file per video); frames done.

    The frames are read from the frame-shard set of `shard_records` (default: every video of the task, one set
    all folds reuse), which must include the `missing` ones.
    """
    options = config["extract"]
    device = resolve_device(config["device"])
    amp = bool(options["amp"]) and device.type == "cuda"
    all_records = inputs.records if shard_records is None else list(shard_records)
    with distributed.main_first():  # every rank calls this, even one with no video of its own: rank 0 writes the shards
        shards_dir = ensure_frame_shards(all_records, inputs.dataset, task=inputs.task,
                                         provenance=inputs.dataset_provenance, selection={"stage": "extract"},
                                         stamps=inputs.stamps_digest(all_records),
                                         preprocess=backbone.preprocess, quiet=quiet)
    if not missing:
        return 0
    wanted = {r.video: r for r in missing}
    stamps = inputs.stamps_of(missing)
    expected = {v: [i + 1 for i, img in enumerate(r.images) if img] for v, r in wanted.items()}
    pending: dict[str, dict[int, np.ndarray]] = {v: {} for v in wanted}
    total = sum(len(f) for f in expected.values())
    backbone = image_model_on(backbone, device).eval()
    forward = compiled(backbone, config)
    done = 0
    started = time.perf_counter()
    batches = frame_batches(shards_dir, batch_size=int(options["batch_size"]), workers=int(options["workers"]),
                            wanted=set(wanted), device=device)
    # A finished video's file is written (and flushed to disk) by one thread beside the loop, so the next batches'
    # forward passes do not wait for the disk; leaving the block waits for every write, even after an error.
    stores: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="features") as writer, backbone_threads(), \
            torch.inference_mode(), tqdm(total=total, desc=f"extract {inputs.task}", unit="frame", disable=quiet,
                                         leave=False) as bar:
        for batch in batches:
            images = batch_to_input(batch["image"], backbone.preprocess, device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                features = forward(images)
            features = features.float().cpu().numpy()
            for video, frame, feature in zip(batch["video"], batch["frame"], features, strict=True):
                pending[video][int(frame)] = feature
                if len(pending[video]) == len(expected[video]):
                    stores.append(writer.submit(_store_video, directory, wanted[video], expected[video],
                                                pending.pop(video), stamps[video]))
            stores = _running(stores)
            done += len(batch["video"])
            bar.update(len(batch["video"]))
    for store in stores:
        store.result()
    unfinished = [v for v in pending if expected[v]]
    if unfinished:
        raise RuntimeError(f"extract: the frame shards in {shards_dir} lack frames of {len(unfinished)} video(s) "
                           f"(e.g. '{unfinished[0]}'); delete that directory to rewrite them")
    if not quiet:
        seconds = max(time.perf_counter() - started, 1e-9)
        tqdm.write(f"extract {inputs.task}: {done} frames of {len(wanted)} videos in {seconds:.1f} s "
                   f"({done / seconds:.0f} frames/s)")
    return done


def _running(stores: list[Future]) -> list[Future]:
    """The feature writes still running; a failed one raises its error here, stopping the extraction."""
    running = []
    for store in stores:
        if store.done():
            store.result()
        else:
            running.append(store)
    return running


def _store_video(directory: Path, record: VideoRecord, frames: list[int], features: dict[int, np.ndarray],
                 stamps: np.ndarray) -> None:
    images = [record.images[f - 1] for f in frames]
    image_stamps = stamps[[f - 1 for f in frames]]
    stored = cache.load_video_features(directory, record.video)
    rows = np.stack([features[f] for f in frames])
    if stored is not None:  # keep images another task listed for this video and this one did not
        old_images, old_rows, old_stamps = stored
        new = set(images)
        extra = [i for i, image in enumerate(old_images) if image not in new]
        images += [old_images[i] for i in extra]
        rows = np.concatenate([rows, old_rows[extra].astype(rows.dtype)])
        image_stamps = np.concatenate([image_stamps, old_stamps[extra]])
    cache.save_video_features(directory, record.video, images, rows, image_stamps)


def video_features(features: FeatureSet, record: VideoRecord, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, D], feature_mask [n]) of one record under the missing-face `policy`."""
    from affbench.data.missing_faces import apply_policy

    has_image = record.has_image
    if has_image.any():
        rows = cached_rows(features.directory, record)
        if rows is None:
            raise ValueError(f"video '{record.video}': its cached features in {features.directory} are missing or "
                             "were damaged (and removed); run the command again to extract them")
    else:
        rows = np.zeros((record.n_frames, features.feature_dim), dtype=np.float16)
    return apply_policy(rows.astype(np.float32), has_image, policy)
