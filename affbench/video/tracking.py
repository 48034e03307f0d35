"""Linking face detections across frames into tracks by box overlap.

Each frame, live tracks and new detections are matched by the assignment that maximises total IoU
(``scipy.optimize.linear_sum_assignment`` on 1 - IoU); a pair below ``min_iou`` is not a match. A track takes at
most one detection per frame and a detection joins at most one track, so two faces are never merged into one
track. An unmatched detection starts a new track; a track unmatched for more than ``max_missed`` consecutive
frames ends and is never resumed (a face that comes back later starts a new track).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from affbench.video.detectors import Face, box_iou
from affbench.video.extra import require
from affbench.video.options import MAX_MISSED, MIN_IOU


@dataclass
class Track:
    """One face track: its id (in order of appearance), the last box and the frames where it had a face."""

    id: int
    box: np.ndarray
    frames: list[int] = field(default_factory=list)
    missed: int = 0

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    def spans(self) -> list[list[int]]:
        """Runs of consecutive frames with a face, as [first, last] pairs (1-based, inclusive)."""
        runs: list[list[int]] = []
        for frame in self.frames:
            if runs and frame == runs[-1][1] + 1:
                runs[-1][1] = frame
            else:
                runs.append([frame, frame])
        return runs


class IoUTracker:
    """Online tracker: ``update(frame, faces)`` returns the track id of each face, in the order given."""

    def __init__(self, *, min_iou: float = MIN_IOU, max_missed: int = MAX_MISSED) -> None:
        if not 0 < min_iou <= 1:
            raise ValueError(f"min_iou must lie in (0, 1], got {min_iou}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0 frames, got {max_missed}")
        self.min_iou = float(min_iou)
        self.max_missed = int(max_missed)
        self.tracks: list[Track] = []  # every track ever started, in order of appearance
        self._live: list[Track] = []

    def update(self, frame: int, faces: Sequence[Face]) -> list[int]:
        """Assign this frame's faces to tracks (starting new ones as needed); returns one track id per face."""
        ids = [-1] * len(faces)
        matched: set[int] = set()
        if self._live and faces:
            optimize = require("scipy.optimize")
            iou = box_iou(np.stack([t.box for t in self._live]), np.stack([f.box for f in faces]))
            rows, cols = optimize.linear_sum_assignment(1.0 - iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= self.min_iou:
                    track = self._live[r]
                    track.box, track.missed = faces[c].box, 0
                    track.frames.append(frame)
                    ids[c] = track.id
                    matched.add(id(track))
        for track in self._live:
            if id(track) not in matched:
                track.missed += 1
        self._live = [t for t in self._live if t.missed <= self.max_missed]
        for c, face in enumerate(faces):
            if ids[c] < 0:
                track = Track(len(self.tracks), face.box, [frame])
                self.tracks.append(track)
                self._live.append(track)
                ids[c] = track.id
        return ids
