"""The one explicit policy for frames without a face image, applied wherever per-frame features are built.

Policies (``features[n, D]``, ``has_image[n]``) -> ``(features, feature_mask[n])``:

- ``mask`` (default): frames without a face get zero features and ``feature_mask`` False, so the temporal model
  treats them as padding (they still carry their labels and are still scored).
- ``zeros``: frames without a face get zero features but count as real steps (``feature_mask`` True).
- ``ffill``: each frame without a face repeats the last earlier face's features; frames before the first face
  take the first face's features (backfill). ``feature_mask`` True.
- ``interpolate``: linear interpolation between the nearest earlier and later face; before the first and after the
  last face the edge face's features are held. ``feature_mask`` True.

For every policy, a video with no face at all yields zero features and ``feature_mask`` all False: there is
nothing to fill from. Frames with a face always keep their own features, and ``feature_mask`` True.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from affbench.data import DEFAULT_MISSING_FACE_POLICY, MISSING_FACE_POLICIES

POLICIES = MISSING_FACE_POLICIES
DEFAULT_POLICY = DEFAULT_MISSING_FACE_POLICY


def check_policy(policy: str) -> str:
    """Return `policy` if it is known, else raise ValueError listing the accepted ones."""
    if policy not in POLICIES:
        raise ValueError(f"unknown missing-face policy '{policy}'; accepted: {', '.join(POLICIES)}")
    return policy


def apply_policy(features, has_image, policy: str = DEFAULT_POLICY) -> tuple[np.ndarray, np.ndarray]:
    """Fill the features of frames without a face by `policy`; returns (new features, feature_mask bool[n])."""
    check_policy(policy)
    feats = np.asarray(features)
    present = np.asarray(has_image)
    if feats.ndim != 2:
        raise ValueError(f"features must be [n, D], got shape {feats.shape}")
    if present.shape != (feats.shape[0],):
        raise ValueError(f"has_image must be [n] = [{feats.shape[0]}] to match features, got shape {present.shape}")
    if present.dtype != bool:
        raise ValueError(f"has_image must be a bool array, got dtype {present.dtype}")
    dtype = feats.dtype if np.issubdtype(feats.dtype, np.floating) else np.dtype(np.float32)
    n = feats.shape[0]
    faces = np.flatnonzero(present)
    if faces.size == 0:
        return np.zeros(feats.shape, dtype=dtype), np.zeros(n, dtype=bool)
    if policy in ("mask", "zeros"):
        out = np.where(present[:, None], feats, 0).astype(dtype, copy=False)
        mask = present.copy() if policy == "mask" else np.ones(n, dtype=bool)
        return out, mask
    if policy == "ffill":
        positions = np.arange(n)
        last_face = np.maximum.accumulate(np.where(present, positions, -1))
        last_face[last_face < 0] = faces[0]  # before the first face: take the first face
        return feats[last_face].astype(dtype, copy=True), np.ones(n, dtype=bool)
    return _interpolate(feats, present, faces, dtype), np.ones(n, dtype=bool)


def _interpolate(feats: np.ndarray, present: np.ndarray, faces: np.ndarray, dtype: np.dtype) -> np.ndarray:
    n = feats.shape[0]
    positions = np.arange(n)
    after = np.searchsorted(faces, positions, side="left")  # index of the first face at or after each frame
    right = faces[np.minimum(after, faces.size - 1)]
    left = faces[np.maximum(after - 1, 0)]
    before_first = after == 0
    left[before_first] = right[before_first]  # hold the first face
    span = (right - left).astype(np.float64)
    weight = np.divide(positions - left, span, out=np.zeros(n), where=span > 0)
    weight = np.clip(weight, 0.0, 1.0)[:, None]  # after the last face left == right: hold it
    work = feats.astype(np.float64)
    out = (1.0 - weight) * work[left] + weight * work[right]
    out[present] = work[present]  # faces keep their own features exactly
    return out.astype(dtype)


@dataclass(frozen=True)
class MissingFaceCounts:
    """How many frames and videos lack face images (for logs and provenance)."""

    videos: int
    frames: int
    frames_without_face: int
    videos_with_missing: int
    videos_without_any_face: int

    @property
    def fraction_missing(self) -> float:
        return self.frames_without_face / self.frames if self.frames else 0.0

    def describe(self, policy: str = DEFAULT_POLICY) -> str:
        """One log line: the counts and what the policy does with them."""
        return (
            f"{self.frames_without_face} of {self.frames} frames ({100 * self.fraction_missing:.1f}%) have no face "
            f"image, in {self.videos_with_missing} of {self.videos} videos ({self.videos_without_any_face} with no "
            f"face at all); missing-face policy '{check_policy(policy)}'"
        )

    def as_dict(self) -> dict[str, int | float]:
        """A JSON-ready dict of the counts."""
        return {
            "videos": self.videos,
            "frames": self.frames,
            "frames_without_face": self.frames_without_face,
            "fraction_without_face": self.fraction_missing,
            "videos_with_missing": self.videos_with_missing,
            "videos_without_any_face": self.videos_without_any_face,
        }


def count_missing(has_image_per_video: Iterable) -> MissingFaceCounts:
    """Count missing faces over videos, each given as a bool[n] array (or a VideoRecord, via .has_image)."""
    videos = frames = missing = partial = none = 0
    for item in has_image_per_video:
        present = np.asarray(item.has_image if hasattr(item, "has_image") else item, dtype=bool)
        n = int(present.size)
        lacking = n - int(present.sum())
        videos += 1
        frames += n
        missing += lacking
        partial += lacking > 0
        none += n > 0 and lacking == n
    return MissingFaceCounts(videos, frames, missing, partial, none)
