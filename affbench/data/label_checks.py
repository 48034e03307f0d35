"""Labels a built-in task can learn from: a custom dataset's out-of-range value fails before any stage runs.

Checked on the frames a dataset marks valid: VA values lie in [-1, 1], an EXPR label is a class index
0..7, an AU label is 0 or 1. A task from a plugin is not checked here (its loss says what it accepts).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from affbench.data.records import VideoRecord

# task -> (label width, description of accepted values, test of an array of valid rows)
_ACCEPTED = {
    "va": (2, "numbers in [-1, 1]", lambda v: (v >= -1) & (v <= 1)),
    "expr": (1, "class indices 0..7", lambda v: (v == np.round(v)) & (v >= 0) & (v <= 7)),
    "au": (12, "0 or 1", lambda v: (v == 0) | (v == 1)),
}


def check_labels(records: Iterable[VideoRecord], task: str, dataset: str) -> None:
    """Raise ValueError naming dataset, video, frame and value when a valid frame's label is out of range."""
    if task not in _ACCEPTED:
        return
    width, accepted, ok = _ACCEPTED[task]
    for record in records:
        if record.labels.shape[1] != width:
            raise ValueError(f"dataset '{dataset}' video '{record.video}': {record.labels.shape[1]} label "
                             f"column(s), task '{task}' needs {width}")
        labels = np.asarray(record.labels, dtype=np.float64)[record.valid]
        bad = ~ok(labels) | ~np.isfinite(labels)
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            frame = int(np.flatnonzero(record.valid)[row]) + 1
            raise ValueError(f"dataset '{dataset}' video '{record.video}' frame {frame}: {task} label "
                             f"{labels[row, col]!r} (column {col}) is out of range; accepted: {accepted} (mark an "
                             "unusable frame invalid instead)")
