"""Checks of a dataset's records before any stage runs.

Labels a built-in task can learn from: checked on the frames a dataset marks valid, VA values lie in [-1, 1],
an EXPR label is a class index 0..7, an AU label is 0 or 1; a custom dataset's out-of-range value fails. A task
from a plugin is not checked here (its loss says what it accepts).

Videos without any face image (in Aff-Wild2: annotations but no image folder) are legal, as all-faceless
videos, but usually a sign of a missing or misnamed folder: they are warned about and counted in provenance.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from affbench.data.affwild2_layout import ACCEPTED_VALUES, LABEL_COLUMNS
from affbench.data.records import VideoRecord


def check_labels(records: Iterable[VideoRecord], task: str, dataset: str) -> None:
    """Raise ValueError naming dataset, video, frame and value when a valid frame's label is out of range."""
    if task not in ACCEPTED_VALUES:
        return
    width = len(LABEL_COLUMNS[task])
    accepted, ok = ACCEPTED_VALUES[task]
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
                             f"{float(labels[row, col])!r} (column {col}) is out of range; accepted: {accepted} (mark an "
                             "unusable frame invalid instead)")


def faceless_videos(records: Sequence[VideoRecord], dataset: str, task: str) -> list[str]:
    """The videos without a single face image; warns with their count and a few names when there are any."""
    videos = sorted(r.video for r in records if r.n_frames and not r.has_image.any())
    if videos:
        shown = ", ".join(f"'{v}'" for v in videos[:3]) + (", ..." if len(videos) > 3 else "")
        warnings.warn(f"affbench: dataset '{dataset}' task '{task}': {len(videos)} video(s) have annotations but no "
                      f"face image at all ({shown}); they are used as all-faceless. Check the image folder "
                      "names if that is not intended.", RuntimeWarning, stacklevel=2)
    return videos
