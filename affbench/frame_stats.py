"""A run's scored validation frames, and their per-video sufficient statistics for the report's bootstrap.

A run folder's ``predictions.validation.csv`` holds, per frame, the values the run was scored on and (since the
``valid`` / ``true_<column>`` columns exist) the label it was scored against. Runs written before those columns
existed get their labels from the validation window shards named in ``data_provenance.json`` instead, the
shards the run was validated on.

A task's ``scoring`` (affbench.task_contract) says which additive statistics one video contributes (CCC sums
per dimension; tp/fp/fn per class or label) and how the table's scores follow from them, so that
``score(sum of video statistics)`` equals the task's own metric on the concatenated frames.

A run scored under ``eval.scoring: windows`` is rescored by the same rule (affbench.scoring_rule): each video's
statistics count the frames of its full windows, each as often as windows hold it, as its metrics.json does.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affbench import metrics as abaw
from affbench import task_contract as contract
from affbench.scoring_rule import ScoringRule

PREDICTIONS_FILE = "predictions.validation.csv"


def mean_f1(counts: np.ndarray) -> np.ndarray:
    """Mean F1 over the last-but-one axis of [..., K, 3] (tp, fp, fn) counts."""
    return abaw.f1_from_counts(counts).mean(axis=-1)


@dataclass(frozen=True)
class TaskScoring:
    """Per-video statistics of a task and the scores (metric key -> function) computed from them."""

    stats: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (pred [n, P], true [n, P]) of scored frames
    scores: Mapping[str, Callable[[np.ndarray], np.ndarray]]  # statistics [..., *shape] -> [...]


@dataclass
class RunFrames:
    """Every validation frame of one run, per video: scored values, labels, and which frames are scored."""

    task: str
    pred: dict[str, np.ndarray]  # video -> float [n, P]
    true: dict[str, np.ndarray]  # video -> float [n, P]
    scored: dict[str, np.ndarray]  # video -> bool [n]: valid label, scored by the task's metric
    rule: ScoringRule = ScoringRule()  # how often each scored frame counts (the run's eval.scoring)

    def video_stats(self, keep: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """video -> the task's statistics over its scored frames (also where `keep` [n] is True)."""
        scoring = task_scoring(self.task)
        out = {}
        for video, scored in self.scored.items():
            rows = self.rule.scored_index(scored if keep is None else scored & keep[video])
            out[video] = scoring.stats(self.pred[video][rows], self.true[video][rows])
        return out

    def scored_labels(self) -> dict[str, np.ndarray]:
        """video -> the labels [k, P] of its scored frames, each as often as it counts."""
        return {v: self.true[v][self.rule.scored_index(self.scored[v])] for v in self.true}

    def n_scored(self) -> int:
        """Scored frames over all videos, each as often as it counts."""
        return int(sum(self.rule.scored_index(m).size for m in self.scored.values()))

    def labels_only(self, pred: Mapping[str, np.ndarray]) -> RunFrames:
        """The same frames and labels with other predictions (video -> [n, P]): how references are scored."""
        return RunFrames(self.task, dict(pred), self.true, self.scored, self.rule)


def task_scoring(task: str) -> TaskScoring | None:
    """The per-video statistics the task `task` declares (None: its runs cannot be rescored frame by frame)."""
    return contract.scoring(contract.task_named(task))


def common_frames(a: RunFrames, b: RunFrames) -> dict[str, np.ndarray]:
    """video -> bool [n]: the frames both runs scored (videos both hold with the same length)."""
    out = {}
    for video in sorted(set(a.scored) & set(b.scored)):
        if a.scored[video].shape == b.scored[video].shape:
            out[video] = a.scored[video] & b.scored[video]
    return out


def read_predictions(run_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """video -> column -> float array (frame order) from a run's predictions.validation.csv ({} if none)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return {}
    columns: dict[str, dict[str, list[float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            video = row.pop("video")
            per = columns.setdefault(video, {})
            for key, value in row.items():
                per.setdefault(key, []).append(float(value) if value not in ("", None) else np.nan)
    return {v: {k: np.asarray(x) for k, x in cols.items()} for v, cols in columns.items()}


def validation_labels(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """video -> (labels [n, L], valid [n]): from the predictions file's label columns, else from the validation
    window shards recorded in the run's data_provenance.json ({} when neither is there)."""
    from_csv = {}
    for video, cols in read_predictions(run_dir).items():
        true = [c for c in cols if c.startswith("true_")]
        if "valid" not in cols or not true or np.isnan(cols["valid"]).any():
            from_csv = {}
            break
        from_csv[video] = (np.stack([cols[c] for c in true], axis=1), cols["valid"] == 1)
    return from_csv or _window_shard_labels(run_dir)


def _window_shard_labels(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from affbench.data.window_shards import WindowShards

    path = Path(run_dir) / "data_provenance.json"
    if not path.is_file():
        return {}
    prov = json.loads(path.read_text(encoding="utf-8"))
    directory = ((prov.get("data") or {}).get("window_shards") or {}).get("validation")
    if not directory or not (Path(directory) / "manifest.json").is_file():
        return {}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for window in WindowShards(directory).iter_windows():
        video, n = window["video"], window["n_frames"]
        if video not in out:
            out[video] = (np.zeros((n, window["labels"].shape[1]), np.float32), np.zeros(n, bool))
        labels, valid = out[video]
        real = window["frames"] > 0
        idx = window["frames"][real] - 1
        labels[idx] = window["labels"][real]
        valid[idx] = window["valid"][real]
    return out


def read_run_frames(run_dir: str | Path | None, task: str, rule: ScoringRule | None = None) -> RunFrames | None:
    """The scored frames of a run of `task` under its scoring `rule` (default every frame once); None when its
    predictions or labels are missing, or the task declares no per-video scoring."""
    if run_dir is None or task_scoring(task) is None:
        return None
    preds = read_predictions(run_dir)
    labels = validation_labels(run_dir)
    checker = contract.task_named(task)  # the task's own columns and rule for a usable label row
    columns = contract.prediction_columns(checker)
    if not preds or set(preds) != set(labels) or not all(c in preds[v] for v in preds for c in columns):
        return None
    pred, true, scored = {}, {}, {}
    for video, cols in preds.items():
        values = np.stack([cols[c] for c in columns], axis=1)
        label, valid = labels[video]
        if label.shape != values.shape:
            return None
        pred[video], true[video] = values, np.asarray(label, np.float64)
        scored[video] = np.asarray(valid, bool) & contract.valid_rows(checker, true[video])
    return RunFrames(task, pred, true, scored, rule or ScoringRule())
