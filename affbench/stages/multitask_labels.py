"""Several tasks' labels of one frame in one row, and the masked loss that learns from all of them at once.

A video can be labelled for some tasks and not others (Aff-Wild2's three challenges label overlapping but
different videos), and a frame's label can be invalid for one task only. The layout keeps each task's label
columns side by side, followed by one 0/1 column per task saying whether that task's label is usable:

    [task 1 labels | task 2 labels | ... | usable 1 | usable 2 | ...]

so one float32 array per video holds everything, and the frame-shard format stays that of a single task.
Labels a video does not have are written as 0 with usable 0: they never reach a loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from affbench.data.records import VideoRecord


class MultiTaskLabels:
    """The column layout of several tasks' labels, the merge of their records, and their masked loss."""

    def __init__(self, tasks: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        if not tasks:
            raise ValueError("MultiTaskLabels needs at least one task")
        self.tasks = list(tasks)
        # Each task's loss is multiplied by its weight before the sum (default 1 each).
        self.weights = [1.0] * len(self.tasks) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.tasks):
            raise ValueError(f"MultiTaskLabels: {len(self.weights)} weights for {len(self.tasks)} tasks")
        self.label_dims = [int(t.label_dim) for t in self.tasks]
        self.out_dims = [int(t.out_dim) for t in self.tasks]
        self.n_label_columns = sum(self.label_dims)
        # Task i's label columns and output columns, side by side in task order.
        self.label_slices = _consecutive(self.label_dims)
        self.out_slices = _consecutive(self.out_dims)

    def to(self, device: torch.device | str) -> MultiTaskLabels:
        """Move the tasks' buffers (class weights, thresholds) to `device`; returns self."""
        self.tasks = [t.to(device) for t in self.tasks]
        return self

    @property
    def width(self) -> int:
        """Columns of a merged label row: every task's labels, then one usability flag per task."""
        return self.n_label_columns + len(self.tasks)

    @property
    def out_dim(self) -> int:
        """Outputs a model needs: every task's outputs side by side."""
        return sum(self.out_dims)

    def merge(self, per_task: Sequence[Mapping[str, VideoRecord]]) -> list[VideoRecord]:
        """One record per video from each task's records of it (`per_task[i]`: video -> record of task i).

        A video's frames are those of its longest annotation; a task's label is usable on frame j only where
        that task's record has frame j and marks it valid. Images come from the longest record.
        """
        if len(per_task) != len(self.tasks):
            raise ValueError(f"merge: {len(per_task)} record sets for {len(self.tasks)} tasks")
        videos = sorted({v for records in per_task for v in records})
        merged = []
        for video in videos:
            present = [(i, records[video]) for i, records in enumerate(per_task) if video in records]
            longest = max((r for _, r in present), key=lambda r: r.n_frames)
            n = longest.n_frames
            labels = np.zeros((n, self.width), dtype=np.float32)
            for i, record in present:
                m = record.n_frames
                usable = np.asarray(record.valid, dtype=bool)
                labels[:m, self.label_slices[i]] = np.where(usable[:, None], record.labels, 0.0)
                labels[:m, self.n_label_columns + i] = usable
            valid = labels[:, self.n_label_columns:].any(axis=1)
            merged.append(VideoRecord(video, longest.source, list(longest.images), labels, valid))
        return merged

    def loss(self, pred: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted sum over tasks of each task's own loss on the rows where its label is usable.

        A task with no usable row in the batch adds nothing (and no gradient): labels a frame does not have
        can never change what is learned.
        """
        if labels.shape[-1] != self.width:
            raise ValueError(f"multi-task labels need {self.width} columns, got {labels.shape[-1]}")
        labels = labels.reshape(-1, self.width).to(pred.device)
        pred = pred.reshape(-1, self.out_dim)
        keep = torch.ones(labels.shape[0], dtype=torch.bool, device=pred.device) if valid is None else \
            valid.reshape(-1).to(pred.device, dtype=torch.bool)
        total = pred.sum() * 0.0
        for i, task in enumerate(self.tasks):
            usable = keep & (labels[:, self.n_label_columns + i] > 0.5)
            if bool(usable.any()):
                part = task.loss(pred[:, self.out_slices[i]], labels[:, self.label_slices[i]], usable)
                total = total + self.weights[i] * part
        return total

    def usable(self, labels: np.ndarray, i: int) -> np.ndarray:
        """bool [n]: the rows of merged labels [n, width] where task i's label is usable."""
        return np.asarray(labels)[:, self.n_label_columns + i] > 0.5

    def describe(self) -> list[dict[str, Any]]:
        """The layout as JSON: per task its name and column ranges (and its loss weight when not 1)."""
        return [{"task": getattr(task, "name", str(i)),
                 "labels": [self.label_slices[i].start, self.label_slices[i].stop],
                 "outputs": [self.out_slices[i].start, self.out_slices[i].stop],
                 "usable_column": self.n_label_columns + i,
                 **({} if self.weights[i] == 1.0 else {"weight": self.weights[i]})}
                for i, task in enumerate(self.tasks)]


def _consecutive(widths: Sequence[int]) -> list[slice]:
    """Slices of consecutive column blocks of these widths."""
    ends = np.cumsum(widths).tolist()
    return [slice(end - width, end) for width, end in zip(widths, ends, strict=True)]
