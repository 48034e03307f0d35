"""The missing-face policy: what each policy puts in frames without a face image, and the mask it returns."""

from __future__ import annotations

import numpy as np
import pytest

from affbench.data.missing_faces import POLICIES, apply_policy, check_policy, count_missing
from affbench.data.records import VideoRecord

# Frames 0..6; faces at 2 and 5 (feature value = 10 * frame, D = 2 with a second column of -value).
HAS = np.array([False, False, True, False, False, True, False])
FEATS = np.stack([np.arange(7) * 10.0, -np.arange(7) * 10.0], axis=1).astype(np.float32)


def first_column(policy):
    out, mask = apply_policy(FEATS, HAS, policy)
    assert out.shape == FEATS.shape and mask.shape == (7,) and mask.dtype == bool
    np.testing.assert_array_equal(out[:, 1], -out[:, 0])
    return out[:, 0].tolist(), mask.tolist()


def test_mask_zeroes_and_masks_missing_frames():
    values, mask = first_column("mask")
    assert values == [0, 0, 20, 0, 0, 50, 0]
    assert mask == HAS.tolist()


def test_zeros_zeroes_but_keeps_frames_as_real_steps():
    values, mask = first_column("zeros")
    assert values == [0, 0, 20, 0, 0, 50, 0]
    assert mask == [True] * 7


def test_ffill_repeats_last_face_and_backfills_the_start():
    values, mask = first_column("ffill")
    assert values == [20, 20, 20, 20, 20, 50, 50]
    assert mask == [True] * 7


def test_interpolate_is_linear_between_faces_and_holds_edges():
    values, mask = first_column("interpolate")
    np.testing.assert_allclose(values, [20, 20, 20, 30, 40, 50, 50])
    assert mask == [True] * 7


@pytest.mark.parametrize("policy", POLICIES)
def test_no_face_at_all_gives_zeros_and_mask_false(policy):
    out, mask = apply_policy(np.ones((4, 3), np.float32), np.zeros(4, bool), policy)
    assert not out.any() and not mask.any()


@pytest.mark.parametrize("policy", POLICIES)
def test_all_faces_changes_nothing(policy):
    feats = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    out, mask = apply_policy(feats, np.ones(5, bool), policy)
    np.testing.assert_array_equal(out, feats)
    assert mask.all()


@pytest.mark.parametrize("policy", POLICIES)
def test_faces_keep_their_features_input_untouched_dtype_kept(policy):
    feats = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float16)
    before = feats.copy()
    out, _ = apply_policy(feats, HAS, policy)
    np.testing.assert_array_equal(feats, before)
    np.testing.assert_array_equal(out[HAS], feats[HAS])
    assert out.dtype == np.float16
    assert out is not feats


def test_empty_video():
    out, mask = apply_policy(np.zeros((0, 3), np.float32), np.zeros(0, bool), "interpolate")
    assert out.shape == (0, 3) and mask.shape == (0,)


def test_unknown_policy_lists_accepted():
    with pytest.raises(ValueError, match="unknown missing-face policy 'bfill'; accepted: mask, ffill, zeros, interpolate"):
        apply_policy(FEATS, HAS, "bfill")
    assert check_policy("ffill") == "ffill"


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match=r"features must be \[n, D\]"):
        apply_policy(np.zeros(7), HAS)
    with pytest.raises(ValueError, match=r"has_image must be \[n\] = \[7\]"):
        apply_policy(FEATS, HAS[:5])
    with pytest.raises(ValueError, match="has_image must be a bool array"):
        apply_policy(FEATS, HAS.astype(int))


def test_default_policy_is_mask():
    out, mask = apply_policy(FEATS, HAS)
    assert mask.tolist() == HAS.tolist() and out[0, 0] == 0


def test_count_missing_over_records_and_arrays():
    def rec(images):
        n = len(images)
        return VideoRecord("v", "v", images, np.zeros((n, 1), np.float32), np.ones(n, bool))

    counts = count_missing([rec(["a", "", "b"]), rec(["", ""]), rec(["c"]), np.array([True, False])])
    assert (counts.videos, counts.frames, counts.frames_without_face) == (4, 8, 4)
    assert counts.videos_with_missing == 3 and counts.videos_without_any_face == 1
    assert counts.fraction_missing == 0.5
    line = counts.describe("ffill")
    assert "4 of 8 frames (50.0%)" in line and "'ffill'" in line and "1 with no face at all" in line
    assert counts.as_dict()["frames_without_face"] == 4
    with pytest.raises(ValueError, match="accepted: mask"):
        counts.describe("nope")
