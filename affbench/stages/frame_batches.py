"""Batches of face images from frame shards for the backbone stages (fine-tune and extraction).

JPEG decoding runs in DataLoader workers and yields uint8 pixels; resizing and normalisation run once per
batch, on the device the backbone uses (per-image torch calls cost several times more than the decode on a
CPU). Samples of unwanted videos are dropped before decoding, so a resumed extraction does not pay for the
frames it already has. A set of decoded crops is read a whole shard at a time (`CropShardReader`): nothing is
decoded there, and per-sample Python calls were what the read cost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


class FrameDecoder:
    """Decode a frame sample to uint8 RGB pixels, or drop it (None) when its video is not wanted; picklable."""

    def __init__(self, wanted: Collection[str] | None = None) -> None:
        self.wanted = None if wanted is None else frozenset(wanted)

    def __call__(self, members: dict[str, bytes], key: str) -> dict[str, Any] | None:
        from affbench.data.frame_shards import decode_frame, frame_pixels

        if self.wanted is not None and key.rsplit("/", 1)[0] not in self.wanted:
            return None
        sample = decode_frame(members, key)
        sample["image"] = frame_pixels(sample)
        return sample


class CropShardReader:
    """The whole-shard reader of a decoded-crop set (``frame_shards.read_crop_shard``): what `FrameDecoder`
    gives sample by sample, read at once; picklable."""

    def __init__(self, wanted: Collection[str] | None = None) -> None:
        self.wanted = None if wanted is None else frozenset(wanted)

    def __call__(self, shard: Any) -> list[dict[str, Any] | None] | None:
        from affbench.data.frame_shards import read_crop_shard

        return read_crop_shard(shard, self.wanted)


def collate_frames(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """A batch of the kept samples: images (uint8 [B,H,W,3] array, or a list when sizes differ) and labels."""
    kept = [s for s in samples if s is not None]
    images: Any = [s["image"] for s in kept]
    if images and all(im.shape == images[0].shape for im in images):
        images = np.stack(images)
    return {
        "video": [s["video"] for s in kept],
        "frame": [s["frame"] for s in kept],
        "image": images,
        "labels": torch.from_numpy(np.stack([s["labels"] for s in kept])) if kept else None,
        "valid": torch.tensor([s["valid"] for s in kept], dtype=torch.bool),
    }


def frame_batches(shards_dir: str | Path, *, batch_size: int, workers: int, wanted: Collection[str] | None = None,
                  shuffle_seed: int | None = None, epoch: int = 0, device: torch.device | None = None, rank: int = 0,
                  world_size: int = 1) -> Iterator[dict[str, Any]]:
    """Non-empty batches of a frame-shard set (decoded in up to `workers` workers), optionally only `wanted` videos.

    Under data parallelism each of `world_size` ranks reads its own shards (``shards[rank::world_size]`` of the
    epoch's order): the ranks together read every frame once.

    The loader runs `loader_workers(...)` workers; on a GPU batches go to pinned memory.
    """
    from affbench.data.frame_shards import FrameShards
    from affbench.data.shard_loader import ShardLoader

    shards = FrameShards(shards_dir)
    on_gpu = device is not None and device.type == "cuda"
    crops = bool(shards.manifest.get("crops"))
    workers = loader_workers(workers, crops=crops, device=device)
    stream = shards.batch_stream(decode=FrameDecoder(wanted), collate=collate_frames, batch_size=batch_size,
                                 shuffle_seed=shuffle_seed, epoch=epoch, shuffle_buffer=max(1024, 4 * batch_size),
                                 rank=rank, world_size=world_size, read_shard=CropShardReader(wanted) if crops else None)
    workers = min(int(workers), len(shards.shards) // max(1, world_size))
    if world_size > 1:
        from affbench.data.shard_loader import check_enough_shards

        check_enough_shards(len(shards.shards), world_size, workers, where=str(shards_dir))
    loader = ShardLoader(stream, num_workers=workers, pin_memory=on_gpu)
    for batch in loader:
        if len(batch["video"]):
            yield batch


def loader_workers(workers: int, *, crops: bool, device: torch.device | None) -> int:
    """DataLoader workers that read a frame-shard set: `workers`, or 0 for decoded `crops` read for a CPU backbone.

    With nothing to decode, a worker only adds its start (a fork of this process, every epoch) and the copy of
    each batch between processes, and takes cores from the backbone, which runs on all of them on a CPU
    (measured: README, Benchmarks). On a GPU the configured workers keep the device fed.
    """
    on_gpu = device is not None and device.type == "cuda"
    return 0 if crops and not on_gpu else int(workers)


def batch_to_input(images: Any, preprocess: Any, device: torch.device) -> torch.Tensor:
    """uint8 pixels of a batch -> the backbone's normalised float input [B,3,S,S] on `device`.

    For a backbone whose frame shards keep decoded crops (``frame_shards.decoded_crops``), pixels of another size
    are first made into such crops: an image gives the same feature whichever way it arrives (a frame shard of
    either form, or a face crop decoded by ``affbench predict --video``).
    """
    from affbench.data.frame_shards import decoded_crops
    from affbench.model import input_pixels, preprocess_images

    size = preprocess.image_size
    at_size = isinstance(images, np.ndarray) and images.shape[1:3] == (size, size)
    if decoded_crops(preprocess) is not None and not at_size:
        images = input_pixels(images, preprocess)
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch refuses to wrap read-only memory silently
    return preprocess_images(images, preprocess, device=device, memory_format=torch.channels_last)


def image_model_on(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """`module` (a backbone, or a backbone with a head) on `device`, its 4-D weights in channels-last order.

    That is the layout ``batch_to_input`` hands over: convolutions run faster in it on CPUs as on GPUs (an
    EfficientNet-Lite0 fine-tuning step at 64 px: about 1.2x on 2 CPU cores), and every stage that runs a backbone
    (fine-tune, extraction, video prediction, the config profile) uses it, so one image gives one feature.
    """
    return module.to(device=device, memory_format=torch.channels_last)
