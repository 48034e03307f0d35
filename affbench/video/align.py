"""From a detected face to an aligned 112x112 crop: a similarity transform onto a fixed five-point template, or,
for detectors without keypoints, the detection box enlarged by a margin.

The template is the common 112x112 five-point face template (eye centres, nose tip, mouth corners, image left
to right) used for ArcFace-style aligned crops; Aff-Wild2's ``cropped_aligned`` images are 112x112 crops of
the same kind. A similarity transform (rotation, uniform scale, translation) keeps the face's proportions.
"""

from __future__ import annotations

import numpy as np

from affbench.video.detectors import Face
from affbench.video.extra import require

CROP_SIZE = 112
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
# Box mode: the crop is a square around the box's centre, this fraction of the box's longer side on each side.
BOX_MARGIN = 0.15
ALIGNMENT_MODES = ("keypoints", "box")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity transform taking points `src` [N, 2] onto `dst` (Umeyama)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # never a reflection
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def box_transform(box: np.ndarray, margin: float = BOX_MARGIN) -> np.ndarray:
    """2x3 matrix mapping a square around `box` (enlarged by `margin` per side) onto the 112x112 crop."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    scale = CROP_SIZE / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[scale, 0, CROP_SIZE / 2 - scale * cx], [0, scale, CROP_SIZE / 2 - scale * cy]])


def face_transform(face: Face) -> tuple[np.ndarray, str]:
    """(2x3 matrix onto the crop, alignment mode): keypoints when the detector gave them, else the box."""
    if face.keypoints is not None:
        return similarity_transform(face.keypoints, TEMPLATE_112), "keypoints"
    return box_transform(face.box), "box"


def warp_crop(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The 112x112 uint8 RGB crop of `frame` under `matrix` (pixels outside the frame are black)."""
    cv2 = require("cv2")
    return cv2.warpAffine(np.ascontiguousarray(frame), matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
