"""How faces are found and linked: the options of `data crop` and `predict --video`.

Kept apart from the detectors and the tracker (which import numpy and OpenCV) so the command line can show them
in its help without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass

DETECTOR_NAMES = ("mtcnn", "haar")  # the keys of affbench.video.detectors.DETECTORS
DEFAULT_DETECTOR = "mtcnn"
MIN_IOU = 0.3  # a face continues a track when their boxes overlap at least this much
MAX_MISSED = 10  # frames a track survives without a face


@dataclass(frozen=True)
class CropOptions:
    """How faces are found and linked; recorded in every manifest."""

    detector: str = DEFAULT_DETECTOR
    device: str = "cpu"
    batch_size: int = 16
    min_iou: float = MIN_IOU
    max_missed: int = MAX_MISSED
    min_track_frames: int = 5
