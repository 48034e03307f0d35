"""Cluster bootstrap over videos, computed from per-video sufficient statistics.

Contract:

* **Statistics.** Each video contributes one float array of *additive* sufficient statistics, the same shape for
  every video: the statistics of a set of frames are the sum of the statistics of its parts (CCC: the six sums of
  ``affbench.metrics.ccc_sums``; F1: the (tp, fp, fn) counts of ``affbench.metrics.class_counts`` /
  ``binary_counts``). A *score* maps statistics ``[..., *shape]`` to scores ``[...]``, vectorised.
* **Clusters.** The resampling unit is the source video: ``<name>_left`` and ``<name>_right`` (two faces of one
  scene) form one cluster (``affbench.data.records.source_video``), every other video is its own cluster.
* **Draws.** A draw picks ``C`` clusters out of ``C`` with replacement; ``ClusterDraws.weights`` ``[B, C]``
  holds how often each cluster was picked. The statistics of draw ``b`` are ``weights[b] @ cluster_stats``, so
  ``B`` draws cost one ``[B, C] x [C, stat size]`` product: milliseconds for 1,000 draws. The draws are a pure
  function of (seed, key, cluster names): every row scored on the same videos with the same key gets the same
  draws, which is what makes paired differences and means over runs line up draw by draw.
* **Intervals.** Percentile intervals of the draw scores (2.5 % and 97.5 % for the 95 % level).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from affbench.data.records import source_video

DEFAULT_DRAWS = 1000
DEFAULT_SEED = 0
LEVEL = 0.95

Score = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ClusterDraws:
    """B bootstrap draws over the clusters (source videos) of a set of videos."""

    clusters: tuple[str, ...]  # sorted cluster names
    cluster_of: Mapping[str, int]  # video -> index into clusters
    weights: np.ndarray  # int64 [B, C]: how often draw b picked cluster c (each row sums to C)

    @classmethod
    def for_videos(cls, videos: Iterable[str], *, draws: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED,
                   key: str = "") -> ClusterDraws:
        """Draws over the clusters of `videos`, seeded by (seed, key): same inputs, same draws."""
        videos = sorted(set(videos))
        if not videos:
            raise ValueError("a bootstrap needs at least one video")
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"bootstrap draws must be a positive integer, got {draws!r}")
        clusters = tuple(sorted({source_video(v) for v in videos}))
        index = {c: i for i, c in enumerate(clusters)}
        # The key (e.g. "va/fold0") gives each task and fold its own stream from one user-facing seed.
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(key.encode("utf-8"))]))
        weights = rng.multinomial(len(clusters), np.full(len(clusters), 1.0 / len(clusters)), size=draws)
        return cls(clusters, {v: index[source_video(v)] for v in videos}, weights.astype(np.int64))

    @property
    def draws(self) -> int:
        return int(self.weights.shape[0])

    def cluster_stats(self, per_video: Mapping[str, np.ndarray]) -> np.ndarray:
        """float64 ``[C, *shape]``: the statistics of each cluster (sum over its videos; 0 for a cluster with none)."""
        if not per_video:
            raise ValueError("no per-video statistics to resample")
        unknown = sorted(set(per_video) - set(self.cluster_of))
        if unknown:
            raise ValueError(f"video(s) {', '.join(unknown[:3])} are not among the videos these draws were made for")
        shapes = {np.shape(s) for s in per_video.values()}
        if len(shapes) != 1:
            raise ValueError(f"per-video statistics must share one shape, got {sorted(shapes)}")
        out = np.zeros((len(self.clusters), *shapes.pop()), dtype=np.float64)
        for video, stats in per_video.items():
            out[self.cluster_of[video]] += np.asarray(stats, dtype=np.float64)
        return out

    def resample(self, per_video: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(statistics of all frames ``[*shape]``, statistics of every draw ``[B, *shape]``)."""
        stats = self.cluster_stats(per_video)
        return stats.sum(axis=0), np.tensordot(self.weights.astype(np.float64), stats, axes=1)


@dataclass(frozen=True)
class Estimate:
    """A score on all frames, its bootstrap draws (aligned with the ClusterDraws they came from) and interval."""

    value: float
    samples: np.ndarray  # float64 [B]

    @property
    def interval(self) -> tuple[float, float]:
        return percentile_interval(self.samples)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below 0."""
        low, high = self.interval
        return low > 0.0 or high < 0.0


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap samples (numpy's linear quantiles)."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(samples, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def estimate(draws: ClusterDraws, per_video: Mapping[str, np.ndarray], score: Score) -> Estimate:
    """The score of all frames and of every draw."""
    full, resampled = draws.resample(per_video)
    return Estimate(float(score(full)), np.asarray(score(resampled), dtype=np.float64).reshape(draws.draws))


def mean_of(estimates: Sequence[Estimate]) -> Estimate:
    """The mean over runs, draw by draw: draw b of the mean averages draw b of every run.

    Runs scored on the same videos must share their ClusterDraws (same draws); runs of different folds hold
    independent draws, so averaging them draw by draw resamples every fold at once.
    """
    if not estimates:
        raise ValueError("mean_of: no estimate to average")
    return Estimate(float(np.mean([e.value for e in estimates])),
                    np.mean(np.stack([e.samples for e in estimates]), axis=0))


def difference(a: Estimate, b: Estimate) -> Estimate:
    """a - b on the same draws (both must come from the same ClusterDraws, draw for draw)."""
    if a.samples.shape != b.samples.shape:
        raise ValueError(f"paired difference: {a.samples.shape} and {b.samples.shape} draws do not line up")
    return Estimate(a.value - b.value, a.samples - b.samples)
