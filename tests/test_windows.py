"""Windowing rule and per-frame merging of window predictions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affbench.data.windows import (
    VideoPredictionMerger,
    merge_window_predictions,
    window_frame_index,
    window_starts,
)


@st.composite
def video_and_windowing(draw):
    window = draw(st.integers(1, 40))
    stride = draw(st.integers(1, window))
    n = draw(st.integers(1, 200))
    return n, window, stride


def _windows_of(signal: np.ndarray, starts: list[int], window: int) -> tuple[np.ndarray, np.ndarray]:
    idx = window_frame_index(signal.shape[0], starts, window)
    preds = np.where((idx >= 0)[..., None], signal[np.maximum(idx, 0)], 99.0).astype(np.float32)
    return preds, idx


@settings(max_examples=200, deadline=None)
@given(video_and_windowing())
def test_starts_cover_every_frame_and_end_aligned(case):
    n, window, stride = case
    starts = window_starts(n, window, stride)
    assert starts[0] == 0
    assert all(b > a for a, b in zip(starts[:-1], starts[1:], strict=True)), "starts must strictly increase"
    assert all(b - a <= stride for a, b in zip(starts[:-1], starts[1:], strict=True)), "gaps must not exceed the stride"
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()
    if n >= window:
        assert starts[-1] == n - window, "last window must end at the video's end"
        assert all(s + window <= n for s in starts)
    else:
        assert starts == [0]


@settings(max_examples=150, deadline=None)
@given(video_and_windowing(), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_merging_windows_of_one_signal_is_identity(case, n_classes, seed):
    n, window, stride = case
    signal = np.random.default_rng(seed).normal(size=(n, n_classes)).astype(np.float32)
    starts = window_starts(n, window, stride)
    preds, _ = _windows_of(signal, starts, window)
    for reduce in ("mean", "center"):
        merged = merge_window_predictions(n, starts, preds, reduce=reduce)
        assert merged.shape == (n, n_classes)
        np.testing.assert_array_equal(merged, signal)
    merger = VideoPredictionMerger()
    frames = window_frame_index(n, starts, window) + 1
    for i in reversed(range(len(starts))):  # any order
        merger.add("v", preds[i], frames[i], n)
    np.testing.assert_array_equal(merger.result("v"), signal)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_single_window_is_returned(window, n_classes, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, window + 1))
    preds = rng.normal(size=(1, window, n_classes)).astype(np.float32)
    merged = merge_window_predictions(n, [0], preds)
    np.testing.assert_array_equal(merged, preds[0, :n])


def test_overlap_is_averaged():
    preds = np.zeros((2, 4, 1), np.float32)
    preds[0] = 1.0
    preds[1] = 3.0
    starts = window_starts(6, 4, 2)
    assert starts == [0, 2]
    merged = merge_window_predictions(6, starts, preds)
    np.testing.assert_allclose(merged[:, 0], [1, 1, 2, 2, 3, 3])
    centre = merge_window_predictions(6, starts, preds, reduce="center")
    # 0-based frame 2 sits 1 step from window 0's edge but on window 1's edge; frame 3 the other way round
    np.testing.assert_array_equal(centre[:, 0], [1, 1, 1, 3, 3, 3])


def test_paper_windowing_tail_is_covered():
    starts = window_starts(1000, 300, 200)
    assert starts == [0, 200, 400, 600, 700]
    assert window_starts(299, 300, 200) == [0]
    assert window_starts(300, 300, 200) == [0]
    assert window_starts(301, 300, 200) == [0, 1]


@pytest.mark.parametrize(
    ("args", "message"),
    [((10, 0, 1), "window"), ((10, 5, 0), "stride"), ((10, 5, 6), "stride"), ((0, 5, 2), "frame"), ((10, 2.5, 1), "window")],
)
def test_bad_windowing_is_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        window_starts(*args)


def test_uncovered_frame_raises():
    preds = np.ones((1, 4, 2), np.float32)
    with pytest.raises(ValueError, match="frame"):
        merge_window_predictions(6, [0], preds)
    mask = np.ones((1, 4), bool)
    mask[0, 1] = False
    with pytest.raises(ValueError, match=r"1-based: 2"):
        merge_window_predictions(4, [0], preds, mask)
    merger = VideoPredictionMerger()
    merger.add("a", preds[0], np.array([1, 2, 0, 0]), 3)
    with pytest.raises(ValueError, match="video 'a'.*1-based: 3"):
        merger.results()


def test_merger_batches_and_checks_consistency():
    torch = pytest.importorskip("torch")
    merger = VideoPredictionMerger()
    preds = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)
    frames = torch.tensor([[1, 2, 3], [3, 4, 0]], dtype=torch.int32)
    merger.add_batch(["a", "a"], preds, frames, torch.tensor([4, 4]))
    np.testing.assert_allclose(merger.result("a")[:, 0], [0, 1, (2 + 3) / 2, 4])
    with pytest.raises(ValueError, match="n_frames"):
        merger.add("a", np.zeros((3, 1)), np.array([1, 2, 3]), 5)
    with pytest.raises(KeyError, match="'b'"):
        merger.result("b")
    assert merger.videos == ["a"] and len(merger) == 1


def test_dropped_tails_keep_full_windows_only():
    from affbench.data.windows import window_starts

    assert window_starts(10, 4, 3, tails="drop") == [0, 3, 6]  # frames 9-10 are never in a window
    assert window_starts(10, 4, 3) == [0, 3, 6]  # cover: 6 + 4 = 10 already reaches the end
    assert window_starts(11, 4, 3, tails="drop") == [0, 3, 6] and window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(3, 4, 2, tails="drop") == [] and window_starts(3, 4, 2) == [0]
    with pytest.raises(ValueError, match="tails must be one of cover, drop"):
        window_starts(10, 4, 3, tails="trim")
