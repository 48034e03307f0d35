"""Face detectors whose weights install from the package index and load offline, behind one interface.

=========== ====================================== =========== ==================================================
name        weights                                keypoints   install
=========== ====================================== =========== ==================================================
``mtcnn``   MTCNN P/R/O-nets in ``facenet-pytorch`` 5 points   ``pip install --no-deps facenet-pytorch==2.6.0``
``haar``    OpenCV's frontal-face Haar cascade     none        ``opencv-python-headless<5`` (the ``video`` extra)
=========== ====================================== =========== ==================================================

A detector takes a batch of same-size RGB frames and returns, per frame, the faces found: a box
``[x0, y0, x1, y1]`` in pixels, a score, and five keypoints (eyes, nose tip, mouth corners, in image-left to
image-right order) when the detector gives them. ``benchmarks/face_detector_quality.py`` measures recall, box
IoU and speed of each on real photos and on SynthAffect faces; the README quotes its figures.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from affbench.video.extra import MTCNN_HINT, require
from affbench.video.options import DEFAULT_DETECTOR


@dataclass(frozen=True)
class Face:
    """One detected face: box [x0, y0, x1, y1] (pixels), score in [0, 1], keypoints [5, 2] or None."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray | None = None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class MTCNNDetector:
    """MTCNN (Zhang et al. 2016) as packaged by facenet-pytorch: boxes and five keypoints, batched on a device."""

    name = "mtcnn"
    gives_keypoints = True

    def __init__(self, *, device: str = "cpu", min_face_size: int = 20, min_score: float = 0.9) -> None:
        import torch

        facenet = require("facenet_pytorch", hint=MTCNN_HINT)
        self.device = torch.device(device)
        # keep_all: every face of the frame, not just the largest; post_process only concerns its own crops.
        self._mtcnn = facenet.MTCNN(keep_all=True, device=self.device, min_face_size=min_face_size,
                                    post_process=False)
        self.min_score = float(min_score)
        self.version = _version("facenet-pytorch")

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of each frame of a batch of same-size uint8 RGB frames [H, W, 3]."""
        if not frames:
            return []
        import torch

        batch = torch.from_numpy(np.stack(frames))
        with torch.inference_mode():
            boxes, scores, points = self._mtcnn.detect(batch, landmarks=True)
        out: list[list[Face]] = []
        for frame_boxes, frame_scores, frame_points in zip(boxes, scores, points, strict=True):
            faces = []
            if frame_boxes is not None:
                for box, score, keypoints in zip(frame_boxes, frame_scores, frame_points, strict=True):
                    if score >= self.min_score:
                        faces.append(Face(np.asarray(box, np.float32), float(score),
                                          np.asarray(keypoints, np.float32)))
            out.append(faces)
        return out


class HaarCascadeDetector:
    """OpenCV's frontal-face Haar cascade (Viola-Jones): boxes only, CPU only; the files ship in the wheel."""

    name = "haar"
    gives_keypoints = False
    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(self, *, device: str = "cpu", min_face_size: int = 20, min_neighbors: int = 5) -> None:
        cv2 = require("cv2")
        if device != "cpu":
            raise ValueError(f"--device {device}: the haar detector runs on the CPU only; accepted: cpu")
        path = f"{cv2.data.haarcascades}{self.CASCADE}"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ImportError(f"OpenCV has no {self.CASCADE} (opencv-python-headless 5 dropped the cascade "
                              "files); install it with: pip install 'opencv-python-headless<5'")
        self._cv2 = cv2
        self.min_face_size = int(min_face_size)
        self.min_neighbors = int(min_neighbors)
        self.version = f"opencv {cv2.__version__}"

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of each uint8 RGB frame [H, W, 3] (score 1: the cascade gives no calibrated score)."""
        out = []
        for frame in frames:
            gray = self._cv2.cvtColor(np.ascontiguousarray(frame), self._cv2.COLOR_RGB2GRAY)
            found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.min_neighbors,
                                                   minSize=(self.min_face_size, self.min_face_size))
            out.append([Face(np.array([x, y, x + w, y + h], np.float32), 1.0) for x, y, w, h in found])
        return out


DETECTORS = {"mtcnn": MTCNNDetector, "haar": HaarCascadeDetector}


def create_detector(name: str = DEFAULT_DETECTOR, *, device: str = "cpu"):
    """The detector called `name` on `device` (``cpu``, ``cuda``, ``cuda:1``)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector '{name}'; accepted: {', '.join(DETECTORS)}")
    return DETECTORS[name](device=device)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [len(a), len(b)] of boxes [N, 4] and [M, 4] given as x0, y0, x1, y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
