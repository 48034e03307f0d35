"""Cutting videos into overlapping windows, and merging window predictions back into one per frame.

The windowing rule: a video of ``n`` frames gets windows of ``window`` frames every ``stride`` frames, and one
extra window aligned to the video's end when the regular grid would leave a tail uncovered; a video shorter
than ``window`` is one window starting at 0, padded (and masked) past its end. Every frame is covered by at
least one window, so after merging (mean over the windows that cover a frame, by default) every frame of
every video has exactly one prediction and evaluation can score each labelled frame once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MERGE_REDUCTIONS = ("mean", "center")
# cover: every frame in a window (the last one aligned to the end, a short video padded); drop: the loop of the
# authors' earlier code, full windows from frame 0 every stride only, so a video's tail and every video shorter
# than the window are left out (for training windows only: scored splits are always covered).
TAIL_RULES = ("cover", "drop")


def check_window_stride(window: int, stride: int) -> None:
    """The windowing rule: whole frames, at least one, and no frame left between two windows."""
    if int(window) != window or window < 1:
        raise ValueError(f"window must be an integer >= 1 frame, got {window!r}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be an integer >= 1 frame, got {stride!r}")
    if stride > window:
        # A stride longer than the window would skip the frames between windows: they would never be scored.
        raise ValueError(f"stride ({stride}) must be <= window ({window}), or frames between windows are never covered")


def window_starts(n: int, window: int, stride: int, *, tails: str = "cover") -> list[int]:
    """0-based window starts covering all ``n`` frames; the last window ends at the video's end, n < window -> [0].

    ``tails="drop"`` gives full windows only (``range(0, n - window + 1, stride)``; none when n < window).
    """
    check_window_stride(window, stride)
    if tails not in TAIL_RULES:
        raise ValueError(f"tails must be one of {', '.join(TAIL_RULES)}, got {tails!r}")
    if int(n) != n or n < 1:
        raise ValueError(f"a video must have >= 1 frame to be windowed, got n={n!r}")
    n, window, stride = int(n), int(window), int(stride)
    if tails == "drop":
        return list(range(0, n - window + 1, stride))
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def window_counts(n: int, window: int, stride: int) -> np.ndarray:
    """int64 [n]: how many full windows (``tails="drop"``) hold each frame; 0 for a dropped tail and for every
    frame of a video shorter than the window."""
    counts = np.zeros(int(n), dtype=np.int64)
    for start in window_starts(n, window, stride, tails="drop"):
        counts[start:start + int(window)] += 1
    return counts


def window_frame_index(n: int, starts: Sequence[int], window: int) -> np.ndarray:
    """int64 [W, window] 0-based frame index of every window step, -1 where a step is past the video's end."""
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(window, dtype=np.int64)[None, :]
    idx[idx >= n] = -1
    return idx


def _edge_distance(window: int) -> np.ndarray:
    # "center" keeps, per frame, the prediction of the window in which the frame sits farthest from an edge:
    # temporal models see the least context at window edges.
    pos = np.arange(window)
    return np.minimum(pos, window - 1 - pos)


def merge_window_predictions(
    n_frames: int,
    starts: Sequence[int],
    preds: np.ndarray,
    step_mask: np.ndarray | None = None,
    *,
    reduce: str = "mean",
) -> np.ndarray:
    """Per-frame predictions [n_frames, C] from window predictions [W, window, C] (mean over covering windows).

    ``step_mask`` [W, window] bool excludes steps (padding is excluded anyway: steps past ``n_frames``).
    ``reduce="center"`` takes, per frame, the window where the frame is farthest from the window's edges.
    Raises when a frame is covered by no (unmasked) window step.
    """
    if reduce not in MERGE_REDUCTIONS:
        raise ValueError(f"reduce must be one of {MERGE_REDUCTIONS}, got {reduce!r}")
    preds = np.asarray(preds)
    if preds.ndim != 3:
        raise ValueError(f"preds must be [windows, window, classes], got shape {preds.shape}")
    n_windows, window, n_classes = preds.shape
    starts_arr = np.asarray(starts, dtype=np.int64).reshape(-1)
    if starts_arr.shape[0] != n_windows:
        raise ValueError(f"{starts_arr.shape[0]} starts but {n_windows} windows of predictions")
    if n_windows and (starts_arr.min() < 0 or starts_arr.max() >= n_frames):
        raise ValueError(f"window starts must lie in [0, {n_frames}), got {starts_arr.min()}..{starts_arr.max()}")
    idx = window_frame_index(n_frames, starts_arr, window)
    keep = idx >= 0
    if step_mask is not None:
        step_mask = np.asarray(step_mask, dtype=bool)
        if step_mask.shape != (n_windows, window):
            raise ValueError(f"step_mask must be {(n_windows, window)}, got {step_mask.shape}")
        keep &= step_mask
    frames = idx[keep]
    values = preds[keep]
    out_dtype = np.result_type(preds.dtype, np.float32)
    if reduce == "mean":
        counts = np.bincount(frames, minlength=n_frames)
        _raise_uncovered(counts > 0)
        # bincount per class column is a vectorised scatter-add, far faster than np.add.at.
        sums = np.stack(
            [np.bincount(frames, weights=values[:, c], minlength=n_frames) for c in range(n_classes)], axis=1
        ) if n_classes else np.zeros((n_frames, 0))
        return (sums / counts[:, None]).astype(out_dtype, copy=False)
    score = np.broadcast_to(_edge_distance(window), (n_windows, window))[keep]
    order = np.lexsort((score, frames))  # by frame, then by edge distance: the last row per frame wins
    frames_sorted = frames[order]
    last = np.ones(frames_sorted.shape[0], dtype=bool)
    last[:-1] = frames_sorted[1:] != frames_sorted[:-1]
    covered = np.zeros(n_frames, dtype=bool)
    covered[frames_sorted[last]] = True
    _raise_uncovered(covered)
    out = np.empty((n_frames, n_classes), dtype=out_dtype)
    out[frames_sorted[last]] = values[order[last]]
    return out


def _raise_uncovered(covered: np.ndarray, video: str | None = None) -> None:
    if covered.all():
        return
    missing = np.flatnonzero(~covered) + 1
    where = f"video '{video}': " if video is not None else ""
    shown = ", ".join(str(f) for f in missing[:10]) + (" ..." if missing.size > 10 else "")
    raise ValueError(f"{where}{missing.size} frame(s) covered by no window prediction (1-based: {shown})")


class VideoPredictionMerger:
    """Streaming merge of window predictions for many videos, in any order, into per-frame arrays.

    ``add(video, preds[w, C], frames[w], n_frames)`` takes one window; ``frames`` are the window's 1-based frame
    ids with 0 = padding (the ``frames.npy`` field of window shards), so padding never counts.
    ``add_batch`` takes a loader batch. ``result(video)`` / ``results()`` return [n_frames, C] arrays and raise
    if any frame was never covered.
    """

    def __init__(self, *, reduce: str = "mean") -> None:
        if reduce not in MERGE_REDUCTIONS:
            raise ValueError(f"reduce must be one of {MERGE_REDUCTIONS}, got {reduce!r}")
        self.reduce = reduce
        self._n_frames: dict[str, int] = {}
        self._acc: dict[str, np.ndarray] = {}  # mean: sums [n, C]; center: chosen values [n, C]
        self._weight: dict[str, np.ndarray] = {}  # mean: counts [n]; center: best edge distance [n] (-1 = none)

    def __len__(self) -> int:
        return len(self._n_frames)

    @property
    def videos(self) -> list[str]:
        """Videos seen so far, sorted."""
        return sorted(self._n_frames)

    def add(self, video: str, preds: np.ndarray, frames: np.ndarray, n_frames: int) -> None:
        """Accumulate one window's predictions [w, C] at its 1-based ``frames`` [w] (0 = padding)."""
        preds = np.asarray(preds)
        frames = np.asarray(frames).astype(np.int64, copy=False)
        if preds.ndim != 2 or frames.shape != preds.shape[:1]:
            raise ValueError(f"video '{video}': preds must be [w, C] and frames [w]; got {preds.shape}, {frames.shape}")
        n_frames = int(n_frames)
        known = self._n_frames.setdefault(video, n_frames)
        if known != n_frames:
            raise ValueError(f"video '{video}': n_frames {n_frames} differs from an earlier window's {known}")
        if frames.size and (frames.max() > n_frames or frames.min() < 0):
            raise ValueError(f"video '{video}': frame ids must lie in 0..{n_frames} (0 = padding), got {frames.min()}..{frames.max()}")
        n_classes = preds.shape[1]
        acc = self._acc.get(video)
        if acc is None:
            acc = self._acc[video] = np.zeros((n_frames, n_classes), dtype=np.float64)
            self._weight[video] = np.zeros(n_frames) if self.reduce == "mean" else np.full(n_frames, -1)
        elif acc.shape[1] != n_classes:
            raise ValueError(f"video '{video}': {n_classes} prediction columns, earlier windows had {acc.shape[1]}")
        real = frames > 0
        idx = frames[real] - 1  # frame ids within one window are distinct, so fancy-index += is exact
        if self.reduce == "mean":
            acc[idx] += preds[real]
            self._weight[video][idx] += 1
        else:
            score = _edge_distance(frames.shape[0])[real]
            better = score > self._weight[video][idx]
            acc[idx[better]] = preds[real][better]
            self._weight[video][idx[better]] = score[better]

    def add_batch(self, videos: Sequence[str], preds: np.ndarray, frames: np.ndarray, n_frames: Sequence[int]) -> None:
        """Accumulate a batch: videos [B], preds [B, w, C], frames [B, w], n_frames [B] (tensors or arrays)."""
        preds, frames, n_frames = (_to_numpy(x) for x in (preds, frames, n_frames))
        if len(videos) != preds.shape[0]:
            raise ValueError(f"{len(videos)} videos but {preds.shape[0]} windows of predictions")
        for i, video in enumerate(videos):
            self.add(video, preds[i], frames[i], int(n_frames[i]))

    def result(self, video: str) -> np.ndarray:
        """float32 [n_frames, C] merged predictions of one video; raises if a frame was never covered."""
        if video not in self._n_frames:
            raise KeyError(f"no window predictions were added for video '{video}'")
        weight = self._weight[video]
        _raise_uncovered(weight > 0 if self.reduce == "mean" else weight >= 0, video)
        acc = self._acc[video]
        if self.reduce == "mean":
            return (acc / weight[:, None]).astype(np.float32)
        return acc.astype(np.float32)

    def results(self) -> dict[str, np.ndarray]:
        """Merged predictions of every video added, by video name (sorted)."""
        return {video: self.result(video) for video in self.videos}


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; no torch import needed for numpy callers
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)
