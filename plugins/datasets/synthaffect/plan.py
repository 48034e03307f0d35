"""Which videos a SynthAffect size holds: names, lengths, split, two-face pairs and the tasks each is labelled for.

The plan depends only on (size, seed), so it is cheap to recompute and identical in every worker process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from affbench.data.affwild2_layout import SPLITS, TASKS

RESOLUTIONS = ("640x360", "1280x720", "1920x1080", "480x360", "960x540")


@dataclass(frozen=True)
class SizeSpec:
    """How big a SynthAffect dataset is: single-face videos, two-face (_left/_right) videos, frames per video."""

    name: str
    singles: int
    pairs: int
    mean_frames: int
    spread: float = 0.4  # lengths vary uniformly by +- this fraction

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"size name '{self.name}': use letters, digits, '-' or '_' (it names a folder)")
        if self.singles < 0 or self.pairs < 0 or self.singles + self.pairs < 2:
            raise ValueError(f"size '{self.name}': singles={self.singles}, pairs={self.pairs}; accepted: "
                             "non-negative counts with at least 2 source videos (one per split)")
        if self.mean_frames < 30:
            raise ValueError(f"size '{self.name}': mean_frames={self.mean_frames}; accepted: >= 30 (one second)")
        if not 0.0 <= self.spread < 1.0:
            raise ValueError(f"size '{self.name}': spread={self.spread}; accepted: 0 <= spread < 1")

    @property
    def videos(self) -> int:
        """Face tracks (a two-face video has two)."""
        return self.singles + 2 * self.pairs

    def as_dict(self) -> dict:
        return asdict(self)


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec("tiny", singles=4, pairs=1, mean_frames=100, spread=0.2),
    "small": SizeSpec("small", singles=48, pairs=6, mean_frames=100, spread=0.4),
    "medium": SizeSpec("medium", singles=60, pairs=10, mean_frames=600, spread=0.5),
    "large": SizeSpec("large", singles=200, pairs=30, mean_frames=1200, spread=0.6),
}


def size_spec(size: str | SizeSpec) -> SizeSpec:
    """The SizeSpec of a preset name (tiny, small, medium, large) or a SizeSpec given as is."""
    if isinstance(size, SizeSpec):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown SynthAffect size '{size}'; accepted: {', '.join(SIZES)} "
                         "(or a SizeSpec for a custom size)")
    return SIZES[size]


@dataclass(frozen=True)
class TrackPlan:
    """One face track: its file name and the tasks it is annotated for."""

    video: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class SourcePlan:
    """One source video: index (seeds its random stream), length, split and one or two face tracks."""

    index: int
    name: str
    n_frames: int
    split: str
    tracks: tuple[TrackPlan, ...]


def plan_sources(spec: SizeSpec, seed: int) -> list[SourcePlan]:
    """The source videos of a dataset, in index order."""
    rng = np.random.default_rng([seed, 0x5EED, spec.singles, spec.pairs, spec.mean_frames])
    n_sources = spec.singles + spec.pairs
    pair_at = {min(n_sources - 1, int((k + 0.5) * n_sources / spec.pairs)) for k in range(spec.pairs)} \
        if spec.pairs else set()
    # Keep the requested number of pairs even when rounding made two positions collide.
    free = (i for i in range(n_sources) if i not in pair_at)
    while len(pair_at) < spec.pairs:
        pair_at.add(next(free))
    sources = []
    for index in range(n_sources):
        n = int(round(spec.mean_frames * (1 + spec.spread * rng.uniform(-1, 1))))
        split = "validation" if index % 3 == 1 else "train"
        if rng.random() < 0.3:
            name = f"video{index + 1}"
        else:
            name = f"{index + 1}-30-{RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]}"
        names = [f"{name}_left", f"{name}_right"] if index in pair_at else [name]
        tracks = []
        for video in names:
            # Like Aff-Wild2: overlapping but different video sets per task.
            tasks = tuple(t for t in TASKS if rng.random() < 0.8)
            if not tasks:
                tasks = (TASKS[int(rng.integers(len(TASKS)))],)
            tracks.append(TrackPlan(video, tasks))
        sources.append(SourcePlan(index, name, max(n, 30), split, tuple(tracks)))
    return _cover_every_task(sources)


def _cover_every_task(sources: list[SourcePlan]) -> list[SourcePlan]:
    """Make sure each task has at least one video in each split (small sizes could otherwise miss one)."""
    for split in SPLITS:
        for task in TASKS:
            in_split = [s for s in sources if s.split == split]
            if any(task in t.tasks for s in in_split for t in s.tracks):
                continue
            first = in_split[0]
            track = first.tracks[0]
            fixed = TrackPlan(track.video, tuple(t for t in TASKS if t in track.tasks or t == task))
            sources[first.index] = SourcePlan(first.index, first.name, first.n_frames, first.split,
                                              (fixed, *first.tracks[1:]))
    return sources
