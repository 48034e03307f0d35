"""Frame shards: one sample per face image (the JPEG bytes as stored plus its labels), for fine-tuning and
feature extraction.

Sample key ``"{video}/{frame:05d}"`` (1-based frame), members ``jpg`` (the file's bytes, never re-encoded) and
``json`` {video, frame, valid, labels}. Frames without a face image have no sample: there is nothing to train
on or extract from; their labels stay in the dataset's records.

For a small backbone (input side at most ``DECODED_MAX_SIZE``) the set keeps the decoded crop at the backbone's
input size instead of the JPEG: member ``pixels.npy``, uint8 [S, S, 3] (``affbench.model.input_pixels``), and
the manifest's ``crops`` names the size and resize mode. Decoding and resizing a 112 px JPEG costs such a
backbone more than its forward pass; they are then paid once, when the set is written, not on every read.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from affbench.data import FRAME_MAXCOUNT
from affbench.data.records import VideoRecord
from affbench.data.shard_loader import ShardBatchStream, ShardLoader, check_enough_shards
from affbench.data.shard_manifest import LabelStatistics, ShardInfo, ShardSetWriter
from affbench.data.shard_payloads import decode_json, decode_npy, encode_json, encode_npy
from affbench.data.shard_reading import iter_member_groups, open_shard
from affbench.data.shard_set import ShardSet

KIND = "frame_shards"
REQUIRED = frozenset(["json"])  # and one image member: jpg or pixels.npy (checked by decode_frame)
DECODE_MODES = ("rgb", "bytes")
DEFAULT_MAXCOUNT = FRAME_MAXCOUNT
PIXELS = "pixels.npy"
# Up to this input side a decoded crop (3 x 128 x 128 = 48 KiB) is at most a few times a 112 px face JPEG, and
# decoding costs the backbone more than its forward pass. Larger inputs keep the JPEG bytes: ViT-B/16's
# 224 px crops would take 147 KiB a frame (440 GB for Aff-Wild2's 3 M frames), and its forward pass hides the
# decoding (extraction runs at about 1x its forward-only rate).
DECODED_MAX_SIZE = 128


def decoded_crops(preprocess: Any) -> Any:
    """`preprocess` when frame shards for a backbone with this input keep decoded crops, else None (JPEG bytes)."""
    return preprocess if preprocess.image_size <= DECODED_MAX_SIZE else None


def crops_description(crops: Any) -> dict | None:
    """What decides the stored pixels (size and resize mode; normalisation happens on reading), or None."""
    return None if crops is None else {"image_size": crops.image_size, "resize": crops.resize}


def write_frame_shards(
    records: Iterable[VideoRecord],
    image_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    task: str,
    dataset_provenance: Mapping[str, Any],
    maxcount: int = DEFAULT_MAXCOUNT,
    quiet: bool = False,
    desc: str | None = None,
    crops: Any = None,
) -> dict:
    """Write one sample per face image of ``records`` into an atomic shard set; returns the manifest.

    ``desc`` names the progress bar by what is written (default ``frame shards <task>``). ``crops`` (a backbone's
    ``Preprocess``) stores decoded uint8 crops at its input size instead of the JPEG bytes."""
    from affbench.model import input_pixels

    image_root = Path(image_root)
    stats = LabelStatistics()
    seen: set[str] = set()
    n_videos = n_frames = 0
    label_dim: int | None = None
    with ShardSetWriter(out_dir, kind=KIND, maxcount=maxcount) as writer:
        bar = tqdm(records, desc=desc or f"frame shards {task}", unit="video", disable=quiet)
        for record in bar:
            if not record.video or "." in record.video or "\\" in record.video:
                raise ValueError(f"video name {record.video!r} cannot be a shard key: it must be non-empty with no '.' or '\\'")
            if record.video in seen:
                raise ValueError(f"video '{record.video}' is given twice; each video must appear once")
            seen.add(record.video)
            if label_dim is None:
                label_dim = int(record.labels.shape[1])
            elif record.labels.shape[1] != label_dim:
                raise ValueError(f"video '{record.video}': label_dim {record.labels.shape[1]} differs from {label_dim}")
            labels = np.asarray(record.labels, dtype=np.float32)
            for i, image in enumerate(record.images):
                if not image:
                    continue
                path = image_root / image
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    raise FileNotFoundError(
                        f"video '{record.video}' frame {i + 1}: face image {path} listed but missing"
                    ) from None
                # A broken image is named here, by its own path, and never baked into a cached shard (where it
                # would fail every later run with the shard's name, even after the image is fixed).
                try:
                    pixels = decode_jpeg(data)
                except ValueError as exc:
                    raise ValueError(f"video '{record.video}' frame {i + 1}: face image {path} is broken "
                                     f"({exc}); replace it with a valid JPEG or remove it from the dataset") from None
                meta = {
                    "video": record.video,
                    "frame": i + 1,
                    "valid": bool(record.valid[i]),
                    "labels": [float(v) for v in labels[i]],
                }
                image_member = ({"jpg": data} if crops is None else
                                {PIXELS: encode_npy(input_pixels(pixels, crops)[0].numpy())})
                writer.write({"__key__": f"{record.video}/{i + 1:05d}", **image_member, "json": encode_json(meta)})
                n_frames += 1
            n_videos += 1
            stats.add(labels, record.valid)
        return writer.commit(
            {
                "task": task,
                "label_dim": label_dim,
                "counts": {"videos": n_videos, "images": writer.total, "annotated_frames": stats.frames},
                "label_stats": stats.to_dict(),
                "provenance": {"dataset": dict(dataset_provenance), "task": task},
                "crops": crops_description(crops),
            }
        )


def decode_frame(members: dict[str, memoryview], key: str) -> dict[str, Any]:
    """A frame sample {key, jpg (bytes) or pixels (uint8 [S,S,3]), video, frame, labels float32 [L], valid} from
    its tar members."""
    meta = _frame_meta(members)
    if "jpg" in members:
        image = {"jpg": bytes(members["jpg"])}
    elif PIXELS in members:
        pixels = decode_npy(members[PIXELS], PIXELS)
        _check_crop(pixels)
        image = {"pixels": pixels}
    else:
        raise ValueError(f"no image member: a frame sample holds jpg or {PIXELS}")
    return {"key": key, **image, **meta}


def _frame_meta(members: dict[str, memoryview]) -> dict[str, Any]:
    """{video, frame, labels, valid} of a frame sample's json member; ValueError naming what is wrong."""
    meta = decode_json(members["json"], "json")
    for field in ("video", "frame", "valid", "labels"):
        if field not in meta:
            raise ValueError(f"json lacks '{field}'")
    labels = meta["labels"]
    if not isinstance(labels, list) or not all(isinstance(v, (int, float)) for v in labels):
        raise ValueError(f"json 'labels' must be a list of numbers, got {labels!r}")
    return {"video": str(meta["video"]), "frame": int(meta["frame"]), "labels": np.asarray(labels, dtype=np.float32),
            "valid": bool(meta["valid"])}


def _check_crop(pixels: np.ndarray) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"{PIXELS} must hold uint8 [S, S, 3] pixels, got {pixels.dtype} {pixels.shape}")


def read_crop_shard(shard: ShardInfo, wanted: frozenset[str] | None = None) -> list[dict[str, Any] | None] | None:
    """Every sample of a decoded-crop shard read at once, each as ``decode_frame`` and then ``frame_pixels`` give
    it ({key, image, video, frame, labels, valid}; None for a video not in `wanted`, unread), or None when the
    shard is not a regular crop shard: damaged, or a sample with other members, another array header or a
    malformed json. The caller then reads it sample by sample (``decode_frame``), which names what is wrong and
    applies the corrupt-input policy, so either way the same samples come out and the same errors are raised.

    Read per sample, a 32 px crop costs several times its backbone's forward pass in Python calls; here the
    shard's one array header is parsed once and every other crop is only compared with it and viewed in place.
    """
    try:
        buffer = open_shard(shard)
        samples: list[dict[str, Any] | None] = []
        header: bytes | None = None
        for key, members in iter_member_groups(buffer, shard.path):
            if members.keys() != {"json", PIXELS}:
                return None
            if wanted is not None and key.rsplit("/", 1)[0] not in wanted:
                samples.append(None)
                continue
            payload = members[PIXELS]
            if header is None:  # the first crop read fully: its header is the one every other crop must carry
                first = decode_npy(payload, PIXELS)
                _check_crop(first)
                if not first.flags.c_contiguous:
                    return None
                header, shape = bytes(payload[:len(payload) - first.nbytes]), first.shape
            if len(payload) != len(header) + shape[0] * shape[1] * 3 or payload[:len(header)] != header:
                return None
            image = np.frombuffer(payload, dtype=np.uint8, offset=len(header)).reshape(shape)
            samples.append({"key": key, "image": image, **_frame_meta(members)})
    except (ValueError, TypeError, OverflowError):  # damage (CorruptShardError is a ValueError) or a bad value:
        return None  # read sample by sample, which raises or skips it where and as it always does
    return samples if len(samples) == shard.count else None


def frame_pixels(sample: dict[str, Any]) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of a decoded frame sample (its JPEG decoded, or its stored crop)."""
    return decode_jpeg(sample.pop("jpg")) if "jpg" in sample else sample.pop("pixels")


def decode_jpeg(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of JPEG bytes; raises ValueError on undecodable bytes."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                raise ValueError(f"jpg member holds a {image.format} image, not a JPEG")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"jpg member is not a decodable JPEG ({exc})") from None


class _FrameDecoder:
    """Picklable per-sample decoder run inside DataLoader workers."""

    def __init__(self, decode: str, transform: Callable[[np.ndarray], Any] | None) -> None:
        self.decode, self.transform = decode, transform

    def __call__(self, members: dict[str, memoryview], key: str) -> dict[str, Any]:
        sample = decode_frame(members, key)
        if self.decode == "rgb":
            image = frame_pixels(sample)
            sample["image"] = self.transform(image) if self.transform is not None else image
        elif "jpg" not in sample:
            raise ValueError("decode='bytes' reads JPEG frame shards; this set holds decoded crops (decode='rgb')")
        return sample


def _collate_frames(samples: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "key": [s["key"] for s in samples],
        "video": [s["video"] for s in samples],
        "frame": torch.tensor([s["frame"] for s in samples], dtype=torch.int64),
        "labels": torch.from_numpy(np.stack([s["labels"] for s in samples])),
        "valid": torch.tensor([s["valid"] for s in samples], dtype=torch.bool),
    }
    if "jpg" in samples[0]:
        batch["jpg"] = [s["jpg"] for s in samples]
        return batch
    images = [s["image"] for s in samples]
    if isinstance(images[0], torch.Tensor):
        batch["image"] = torch.stack(images)
        return batch
    shapes = {np.shape(im) for im in images}
    if len(shapes) != 1:
        raise ValueError(
            f"images of different sizes {sorted(shapes)} in one batch; pass transform= to resize them "
            "(e.g. affbench.model.preprocess_images) or use decode='bytes'"
        )
    batch["image"] = torch.from_numpy(np.stack(images))
    return batch


class FrameShards(ShardSet):
    """Reader of a frame shard set (``on_corrupt`` "raise" or "skip", as for window shards)."""

    kind = KIND
    required = REQUIRED
    decode = staticmethod(decode_frame)

    def __init__(self, directory: str | os.PathLike, on_corrupt: str = "raise") -> None:
        super().__init__(directory, on_corrupt=on_corrupt)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every sample in stored order: {key, jpg bytes, video, frame, labels, valid}."""
        return self._iter_samples()

    def dataset(
        self,
        batch_size: int,
        *,
        decode: str = "rgb",
        transform: Callable[[np.ndarray], Any] | None = None,
        shuffle_seed: int | None = None,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        resampled_len: int | None = None,
        shuffle_buffer: int = 1024,
        drop_last: bool = False,
    ) -> ShardBatchStream:
        """A torch IterableDataset of batches (use with ``DataLoader(ds, batch_size=None, num_workers=...)``)."""
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        return self.batch_stream(decode=_FrameDecoder(decode, transform), collate=_collate_frames,
                                 batch_size=batch_size, shuffle_seed=shuffle_seed, epoch=epoch, rank=rank,
                                 world_size=world_size, resampled_len=resampled_len, shuffle_buffer=shuffle_buffer,
                                 drop_last=drop_last)

    def loader(self, batch_size: int, *, num_workers: int = 0, pin_memory: bool = False, **options: Any) -> ShardLoader:
        """Batches {image uint8 [B,H,W,3] (or transformed, or ``jpg`` bytes list), labels, valid, frame, video, key};
        JPEG decoding runs in the workers. ``options`` are those of ``dataset``."""
        if options.get("resampled_len") is None:
            check_enough_shards(
                len(self.shards), int(options.get("world_size", 1)), num_workers, f"frame shards {self.directory}"
            )
        stream = self.dataset(batch_size, **options)
        return ShardLoader(stream, num_workers=num_workers, pin_memory=pin_memory)
