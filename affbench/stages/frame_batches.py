"""Batches of face images from frame shards for the backbone stages (fine-tune and extraction).

JPEG decoding runs in DataLoader workers and yields uint8 pixels; resizing and normalisation run once per
batch, on the device the backbone uses (per-image torch calls cost several times more than the decode on a
CPU). Samples of unwanted videos are dropped before decoding, so a resumed extraction does not pay for the
frames it already has.
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
        from affbench.data.frame_shards import decode_frame, decode_jpeg

        if self.wanted is not None and key.rsplit("/", 1)[0] not in self.wanted:
            return None
        sample = decode_frame(members, key)
        sample["image"] = decode_jpeg(sample.pop("jpg"))
        return sample


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
                  shuffle_seed: int | None = None, epoch: int = 0, pin_memory: bool = False, rank: int = 0,
                  world_size: int = 1) -> Iterator[dict[str, Any]]:
    """Non-empty batches of a frame-shard set (decoded in up to `workers` workers), optionally only `wanted` videos.

    Under data parallelism each of `world_size` ranks reads its own shards (``shards[rank::world_size]`` of the
    epoch's order): the ranks together read every frame once.
    """
    from affbench.data.frame_shards import FrameShards
    from affbench.data.shard_loader import ShardLoader

    shards = FrameShards(shards_dir)
    stream = shards.batch_stream(decode=FrameDecoder(wanted), collate=collate_frames, batch_size=batch_size,
                                 shuffle_seed=shuffle_seed, epoch=epoch, shuffle_buffer=max(1024, 4 * batch_size),
                                 rank=rank, world_size=world_size)
    workers = min(int(workers), len(shards.shards) // max(1, world_size))
    if world_size > 1:
        from affbench.data.shard_loader import check_enough_shards

        check_enough_shards(len(shards.shards), world_size, workers, where=str(shards_dir))
    loader = ShardLoader(stream, num_workers=workers, pin_memory=pin_memory)
    for batch in loader:
        if len(batch["video"]):
            yield batch


def batch_to_input(images: Any, preprocess: Any, device: torch.device) -> torch.Tensor:
    """uint8 pixels of a batch -> the backbone's normalised float input [B,3,S,S] on `device`."""
    from affbench.model import preprocess_images

    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch refuses to wrap read-only memory silently
    return preprocess_images(images, preprocess, device=device)
