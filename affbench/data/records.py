"""The per-video label record every dataset plugin produces and every later step consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TRACK_SUFFIXES = ("_left", "_right")


def source_video(video: str) -> str:
    """The source video of a face track: `<name>_left` and `<name>_right` are two faces of video `<name>`."""
    for suffix in _TRACK_SUFFIXES:
        if video.endswith(suffix):
            return video[: -len(suffix)]
    return video


@dataclass
class VideoRecord:
    """One face track's annotation, one entry per annotation line (frame i is index i - 1).

    ``images[i]`` is the face image's path relative to the dataset's image root, or ``""`` where no face was
    found. ``labels`` holds the values as written in the file (valence/arousal floats, the EXPR class index,
    AU 0/1) as float32 ``[n, label_dim]``; ``valid`` says whether a frame's label is usable, regardless of its
    image.
    """

    video: str
    source: str
    images: list[str]
    labels: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.labels.ndim != 2 or self.labels.shape[0] != n or self.valid.shape != (n,):
            raise ValueError(
                f"video '{self.video}': {n} images but labels {self.labels.shape} and valid {self.valid.shape}"
            )

    @property
    def n_frames(self) -> int:
        return len(self.images)

    @property
    def has_image(self) -> np.ndarray:
        """bool [n]: frames that have a face image."""
        return np.fromiter((bool(p) for p in self.images), dtype=bool, count=len(self.images))
