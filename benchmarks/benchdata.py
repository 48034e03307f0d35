"""Inputs the benchmarks generate: per-frame features of synthetic videos, written in three layouts.

- affbench window shards (``write_window_shards``: float16 windows in tar shards),
- one ``.npy`` per frame (float32 [D], one folder per video): the layout published ABAW code reads,
- one ``.npz`` per video (float32 [n, D] plus labels and masks).

The two baseline readers below assemble the same [B, window, D] batches from the other layouts, the way such
code does it (a map-style Dataset, one item per window, collated by the DataLoader).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affbench.data.records import VideoRecord
from affbench.data.window_shards import write_window_shards
from affbench.data.windows import window_starts


@dataclass(frozen=True)
class VideoSpec:
    """A synthetic video: its name, frame count and the seed of its features."""

    video: str
    n_frames: int
    seed: int


def video_specs(n_videos: int, n_frames: int, *, prefix: str = "v", seed: int = 0) -> list[VideoSpec]:
    """`n_videos` videos of `n_frames` frames each."""
    return [VideoSpec(f"{prefix}{i:04d}", n_frames, seed * 100003 + i) for i in range(n_videos)]


def make_video(spec: VideoSpec, dim: int, label_dim: int = 2) -> tuple[VideoRecord, np.ndarray, np.ndarray]:
    """(record, features float32 [n, D], feature_mask [n]) of one synthetic video (5 % frames without a face)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_frames
    features = rng.standard_normal((n, dim), dtype=np.float32)
    has_face = rng.random(n) > 0.05
    images = [f"{spec.video}/{i + 1:05d}.jpg" if has_face[i] else "" for i in range(n)]
    labels = rng.uniform(-1, 1, (n, label_dim)).astype(np.float32)
    valid = rng.random(n) > 0.02
    return VideoRecord(spec.video, spec.video, images, labels, valid), features, has_face


def iter_videos(specs: list[VideoSpec], dim: int) -> Iterator[tuple[VideoRecord, np.ndarray, np.ndarray]]:
    """The videos one at a time (so only one is ever in memory)."""
    for spec in specs:
        yield make_video(spec, dim)


def write_shards(out_dir: Path, specs: list[VideoSpec], *, dim: int, window: int, stride: int,
                 maxcount: int | None = None) -> dict:
    """affbench window shards of `specs`; returns the manifest."""
    options = {} if maxcount is None else {"maxcount": maxcount}
    return write_window_shards(out_dir, iter_videos(specs, dim), window=window, stride=stride,
                               manifest_extra={"source": "benchmarks", "task": {"name": "va"},
                                               "missing_faces": {"policy": "mask"}},
                               quiet=True, **options)


def write_per_frame_npy(root: Path, specs: list[VideoSpec], *, dim: int) -> None:
    """One float32 .npy per frame with a face (root/<video>/<frame>.npy) and labels per video (.npy)."""
    for record, features, has_face in iter_videos(specs, dim):
        folder = root / record.video
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(has_face):
            np.save(folder / f"{i + 1:05d}.npy", features[i])
        np.save(root / f"{record.video}.labels.npy", record.labels)
        np.save(root / f"{record.video}.valid.npy", record.valid)


def write_per_video_npz(root: Path, specs: list[VideoSpec], *, dim: int) -> None:
    """One uncompressed .npz per video: features float32 [n, D], labels, valid, mask."""
    root.mkdir(parents=True, exist_ok=True)
    for record, features, has_face in iter_videos(specs, dim):
        features = features.copy()
        features[~has_face] = 0
        np.savez(root / f"{record.video}.npz", features=features, labels=record.labels, valid=record.valid,
                 mask=has_face)


def _window_index(specs: list[VideoSpec], window: int, stride: int) -> list[tuple[str, int, int]]:
    return [(s.video, start, s.n_frames) for s in specs for start in window_starts(s.n_frames, window, stride)]


class PerFrameNpyWindows(torch.utils.data.Dataset):
    """Windows assembled from one .npy per frame (labels read once per video, as such code does)."""

    def __init__(self, root: Path, specs: list[VideoSpec], *, dim: int, window: int, stride: int) -> None:
        self.root, self.dim, self.window = Path(root), dim, window
        self.items = _window_index(specs, window, stride)
        self.labels = {s.video: np.load(self.root / f"{s.video}.labels.npy") for s in specs}
        self.valid = {s.video: np.load(self.root / f"{s.video}.valid.npy") for s in specs}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        video, start, n = self.items[i]
        stop = min(start + self.window, n)
        features = np.zeros((self.window, self.dim), np.float32)
        mask = np.zeros(self.window, bool)
        folder = self.root / video
        for j, frame in enumerate(range(start, stop)):
            path = folder / f"{frame + 1:05d}.npy"
            if path.exists():
                features[j] = np.load(path)
                mask[j] = True
        labels = np.zeros((self.window, self.labels[video].shape[1]), np.float32)
        labels[: stop - start] = self.labels[video][start:stop]
        valid = np.zeros(self.window, bool)
        valid[: stop - start] = self.valid[video][start:stop]
        return {"features": features, "labels": labels, "valid": valid, "mask": mask}


class PerVideoNpzWindows(torch.utils.data.Dataset):
    """Windows sliced from one .npz per video, loaded for every window that needs it."""

    def __init__(self, root: Path, specs: list[VideoSpec], *, window: int, stride: int) -> None:
        self.root, self.window = Path(root), window
        self.items = _window_index(specs, window, stride)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        video, start, n = self.items[i]
        stop = min(start + self.window, n)
        out: dict[str, Any] = {}
        with np.load(self.root / f"{video}.npz") as data:
            for name in ("features", "labels", "valid", "mask"):
                part = data[name][start:stop]
                padded = np.zeros((self.window, *part.shape[1:]), part.dtype)
                padded[: stop - start] = part
                out[name] = padded
        return out


def baseline_loader(dataset: torch.utils.data.Dataset, *, batch_size: int, workers: int, seed: int = 0):
    """A shuffled DataLoader over a map-style window dataset (default collate)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       generator=generator)
