"""Label-only reference predictors, scored on exactly the frames a table cell is scored on.

Each reference uses only the statistics of the fold's TRAINING labels (the ``label_stats`` of the training window
shards' manifest) and is scored on the fold's validation frames, with the same per-video statistics as a run, so
it gets its bootstrap interval on the same draws. Each task declares its own (``references`` in
affbench.task_contract, with the mechanisms below); the built-in ones:

* ``constant``: VA the training mean (valence, arousal) as a constant (CCC of a constant is 0: the reference
  says how far a row is from knowing nothing); EXPR the single class whose constant prediction gives the best
  8-class macro F1 on the scored frames (the most frequent scored class: chosen on the reported frames, so it
  is an optimistic constant); AU every AU on.
* ``prior``: EXPR and AU predictions sampled from the training prior (class frequencies; each AU's rate of 1).
  The statistics are the EXPECTED confusion counts of that sampling (tp = n_pos * q, fp = n_neg * q,
  fn = n_pos * (1 - q) per class or AU), i.e. the F1 of the expected counts: the limit of a seeded draw as
  frames grow, without its noise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affbench import metrics as abaw
from affbench import task_contract as contract
from affbench.frame_stats import RunFrames

REFERENCES = ("constant", "prior")


def reference_title(task: str, name: str) -> str:
    """What reference `name` of `task` predicts, as the tables name it (from the task's reference_names)."""
    return contract.reference_names(contract.task_named(task))[name]


def selected_on_scored(task: str, name: str) -> bool:
    """Whether the reference is chosen on the frames it is scored on (an optimistic reference)."""
    return name in tuple(getattr(contract.task_named(task), "references_selected_on_scored", ()) or ())


@dataclass
class Reference:
    """One reference predictor on one fold: its per-video statistics and what it predicted."""

    task: str
    name: str  # a key of REFERENCES
    video_stats: dict[str, np.ndarray]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return reference_title(self.task, self.name)


def training_label_stats(run_dir: str | Path | None) -> dict[str, Any] | None:
    """``label_stats`` of the training window shards a run was trained on (via its data_provenance.json)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / "data_provenance.json"
    if not path.is_file():
        return None
    prov = json.loads(path.read_text(encoding="utf-8"))
    directory = ((prov.get("data") or {}).get("window_shards") or {}).get("train")
    manifest = Path(directory) / "manifest.json" if directory else None
    if manifest is None or not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("label_stats")


def column_rates(label_stats: Mapping[str, Any], n_values: int) -> np.ndarray:
    """[columns, n_values]: the training frequency of each value 0..n_values-1 in each label column."""
    rows = []
    for col, entry in enumerate(label_stats.get("columns") or []):
        counts = entry.get("value_counts")
        if counts is None:
            raise ValueError(f"label_stats column {col} has no value counts (not a categorical label)")
        freq = np.array([float(counts.get(str(v), 0)) for v in range(n_values)])
        if freq.sum() <= 0:
            raise ValueError(f"label_stats column {col} holds no valid label")
        rows.append(freq / freq.sum())
    return np.array(rows)


def expected_counts(true: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """[K, 3] expected (tp, fp, fn) when each of K one-vs-rest columns of `true` [n, K] (0/1) is predicted 1
    with probability rate[k], independently of the frame."""
    pos = true.sum(axis=0)
    neg = true.shape[0] - pos
    return np.stack([pos * rate, neg * rate, pos * (1.0 - rate)], axis=-1)


def constant_stats(frames: RunFrames, value: np.ndarray) -> dict[str, np.ndarray]:
    """Per-video statistics of predicting `value` [P] on every frame."""
    pred = {v: np.broadcast_to(np.asarray(value, np.float64), t.shape) for v, t in frames.true.items()}
    return frames.labels_only(pred).video_stats()


def all_labels_on(frames: RunFrames) -> dict[str, np.ndarray]:
    """Per-video statistics of predicting every label of a multi-label task on every frame."""
    return constant_stats(frames, np.ones(next(iter(frames.true.values())).shape[1]))


def all_labels_on_f1(frames: RunFrames) -> np.ndarray:
    """[K] each label's F1 when it is predicted on everywhere: 2p / (1 + p), p its rate on the scored frames."""
    return abaw.f1_from_counts(sum(all_labels_on(frames).values()))


def references_for(frames: RunFrames, label_stats: Mapping[str, Any]) -> list[Reference]:
    """The references `frames.task` declares on those frames (their labels only), from the training label
    statistics; none for a task without references."""
    own = getattr(contract.task_named(frames.task), "references", None)
    return [] if own is None else list(own(frames, label_stats))
