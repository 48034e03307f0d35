"""The tidy per-frame table: one row per annotation line, ``video,frame,image,valid,<labels>``.

``frame`` is 1-based; ``image`` is the face image's path relative to a base folder (the dataset root), empty
where no face was found; ``valid`` is 1 when the label is usable (regardless of the image). Label values are
written as the annotation file has them when their text is known, otherwise in the shortest form that reads back
to the same float32 value.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from affbench.data.affwild2_layout import LABEL_COLUMNS, check_task
from affbench.data.records import VideoRecord

FIXED_COLUMNS = ("video", "frame", "image", "valid")


def frame_columns(task: str) -> list[str]:
    """The table header for `task`: video,frame,image,valid followed by its label columns."""
    return [*FIXED_COLUMNS, *LABEL_COLUMNS[check_task(task)]]


def format_label_value(value: float) -> str:
    """The shortest text that reads back to the same float32 (3.0 -> "3", -5.0 -> "-5", 0.25 -> "0.25")."""
    return np.format_float_positional(np.float32(value), trim="-")


def image_prefix(image_root: str | os.PathLike[str], base: str | os.PathLike[str] | None) -> str:
    """The image root as written in the table: relative to `base` when under it, else absolute ("" when equal)."""
    root = Path(image_root).resolve()
    if base is None:
        return ""
    try:
        rel = root.relative_to(Path(base).resolve())
    except ValueError:
        return root.as_posix()
    return "" if rel == Path(".") else rel.as_posix()


def frame_rows(
    videos: Iterable[tuple[VideoRecord, list[tuple[str, ...]] | None]],
    *,
    prefix: str = "",
) -> Iterator[list[str]]:
    """Rows of the table for (record, value texts or None) pairs, frames ascending within each video."""
    lead = f"{prefix}/" if prefix else ""
    for record, texts in videos:
        if texts is not None and len(texts) != record.n_frames:
            raise ValueError(f"video '{record.video}': {len(texts)} label texts for {record.n_frames} frames")
        for i in range(record.n_frames):
            image = record.images[i]
            values = texts[i] if texts is not None else [format_label_value(v) for v in record.labels[i]]
            yield [record.video, str(i + 1), f"{lead}{image}" if image else "", "1" if record.valid[i] else "0",
                   *values]


def write_frames_csv(
    out: TextIO,
    videos: Iterable[tuple[VideoRecord, list[tuple[str, ...]] | None]],
    task: str,
    *,
    prefix: str = "",
) -> int:
    """Write the header and every row to `out` (a text stream); returns the number of frame rows."""
    writer = csv.writer(out, lineterminator="\n")
    header = frame_columns(task)
    writer.writerow(header)
    n = 0
    for row in frame_rows(videos, prefix=prefix):
        if len(row) != len(header):
            raise ValueError(f"video '{row[0]}': {len(row) - len(FIXED_COLUMNS)} label values per frame; task "
                             f"'{task}' has {len(header) - len(FIXED_COLUMNS)} ({','.join(header[4:])})")
        writer.writerow(row)
        n += 1
    return n
