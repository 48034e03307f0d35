"""Tracking and alignment maths of `affbench data crop` (no video decoding needed)."""

import numpy as np
import pytest

from affbench.video.align import TEMPLATE_112, box_transform, similarity_transform
from affbench.video.detectors import Face, box_iou
from affbench.video.tracking import IoUTracker

pytest.importorskip("scipy.optimize")


def face(x0, y0, size=40):
    return Face(np.array([x0, y0, x0 + size, y0 + size], np.float32), 1.0)


def test_box_iou_against_hand_computed_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_two_faces_passing_each_other_keep_their_own_tracks():
    tracker = IoUTracker(min_iou=0.3, max_missed=2)
    ids = []
    for t in range(30):  # A moves right, B moves left; they overlap around t = 15 without ever swapping
        ids.append(tracker.update(t + 1, [face(10 + 4 * t, 50), face(130 - 4 * t, 58)]))
    assert len(tracker.tracks) == 2
    assert all(frame_ids == [0, 1] for frame_ids in ids)
    assert [len(t.frames) for t in tracker.tracks] == [30, 30]


def test_one_detection_never_joins_two_tracks():
    tracker = IoUTracker()
    tracker.update(1, [face(0, 0), face(20, 0)])  # two overlapping faces
    assert tracker.update(2, [face(10, 0)]) in ([0], [1])
    assert sorted(len(t.frames) for t in tracker.tracks) == [1, 2]


def test_a_track_survives_short_gaps_and_ends_after_max_missed():
    tracker = IoUTracker(max_missed=3)
    for frame in (1, 2, 3, 7, 8):  # a gap of 3 missed frames: same track
        tracker.update(frame, [face(100, 100)])
    for frame in range(9, 13):
        tracker.update(frame, [])
    tracker.update(13, [face(100, 100)])  # 4 missed frames: a new track
    assert [t.frames for t in tracker.tracks] == [[1, 2, 3, 7, 8], [13]]
    assert tracker.tracks[0].spans() == [[1, 3], [7, 8]]


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = TEMPLATE_112 / 2 + 10
    dst = scale * src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_box_transform_maps_the_box_centre_to_the_crop_centre():
    matrix = box_transform(np.array([100, 50, 180, 150]), margin=0.1)
    centre = matrix @ np.array([140, 100, 1.0])
    np.testing.assert_allclose(centre, [56, 56])
    np.testing.assert_allclose(matrix[0, 0], 112 / (100 * 1.2))
