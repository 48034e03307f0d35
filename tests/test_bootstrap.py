"""The cluster bootstrap over videos: hand-checkable draws, clusters of _left/_right tracks, statistics that
equal the metric on the resampled frames, and paired differences on the same draws."""

from __future__ import annotations

import numpy as np
import pytest

from affbench import metrics
from affbench.bootstrap import ClusterDraws, difference, estimate, mean_of, percentile_interval


def f1(counts):
    return metrics.f1_from_counts(counts)


def test_two_videos_every_draw_enumerated_by_hand():
    # Video a alone scores F1 1 (tp 2); video b alone scores 0 (fp 1, fn 1). A draw picks 2 videos of 2:
    #   (a, a) p = 1/4 -> tp 4          -> F1 1
    #   (a, b) p = 1/2 -> tp 2 fp 1 fn 1 -> F1 4/6
    #   (b, b) p = 1/4 -> fp 2 fn 2      -> F1 0
    stats = {"a": np.array([2.0, 0.0, 0.0]), "b": np.array([0.0, 1.0, 1.0])}
    draws = ClusterDraws.for_videos(stats, draws=4000, seed=1, key="t")
    assert draws.clusters == ("a", "b") and draws.weights.shape == (4000, 2)
    assert set(map(tuple, draws.weights.tolist())) == {(2, 0), (1, 1), (0, 2)}
    est = estimate(draws, stats, f1)
    assert est.value == pytest.approx(4 / 6)
    values, counts = np.unique(np.round(est.samples, 12), return_counts=True)
    np.testing.assert_allclose(values, [0.0, 4 / 6, 1.0])
    np.testing.assert_allclose(counts / counts.sum(), [0.25, 0.5, 0.25], atol=0.03)
    # A quarter of the mass sits at each end: the 2.5 % and 97.5 % quantiles are the two extreme draws.
    assert est.interval == (0.0, 1.0)


def test_left_and_right_tracks_are_one_cluster():
    videos = ["x_left", "x_right", "y", "z"]
    draws = ClusterDraws.for_videos(videos, draws=500, seed=0)
    assert draws.clusters == ("x", "y", "z")
    assert draws.cluster_of["x_left"] == draws.cluster_of["x_right"]
    assert (draws.weights.sum(axis=1) == 3).all()
    # Both tracks always come in together, as often as their source video is drawn.
    only_left = {"x_left": np.array([1.0]), "x_right": np.array([0.0]), "y": np.zeros(1), "z": np.zeros(1)}
    only_right = {**only_left, "x_left": np.array([0.0]), "x_right": np.array([1.0])}
    _, left = draws.resample(only_left)
    _, right = draws.resample(only_right)
    np.testing.assert_array_equal(left, right)
    np.testing.assert_array_equal(left[:, 0], draws.weights[:, 0])


def test_ccc_of_a_draw_equals_ccc_of_its_concatenated_frames():
    rng = np.random.default_rng(0)
    frames = {}
    for name in ("v1", "v2", "v3_left", "v3_right", "v4"):
        n = int(rng.integers(20, 60))
        y = rng.uniform(-1, 1, n)
        frames[name] = (0.5 * y + rng.normal(0, 0.3, n), y)
    stats = {v: metrics.ccc_sums(x, y) for v, (x, y) in frames.items()}
    draws = ClusterDraws.for_videos(stats, draws=50, seed=7, key="va/fold0")
    est = estimate(draws, stats, metrics.ccc_from_sums)
    x_all = np.concatenate([x for x, _ in frames.values()])
    y_all = np.concatenate([y for _, y in frames.values()])
    assert est.value == pytest.approx(metrics.ccc(x_all, y_all), abs=1e-12)
    for b in (0, 17, 49):
        picked = [v for v in sorted(frames) for _ in range(draws.weights[b, draws.cluster_of[v]])]
        x = np.concatenate([frames[v][0] for v in picked])
        y = np.concatenate([frames[v][1] for v in picked])
        assert est.samples[b] == pytest.approx(metrics.ccc(x, y), abs=1e-12)


def test_draws_are_a_function_of_seed_and_key():
    a = ClusterDraws.for_videos(["p", "q", "r"], draws=20, seed=3, key="expr/fold1")
    assert np.array_equal(a.weights, ClusterDraws.for_videos(["r", "q", "p"], draws=20, seed=3, key="expr/fold1").weights)
    assert not np.array_equal(a.weights, ClusterDraws.for_videos(["p", "q", "r"], draws=20, seed=4, key="expr/fold1").weights)
    assert not np.array_equal(a.weights, ClusterDraws.for_videos(["p", "q", "r"], draws=20, seed=3, key="au/fold1").weights)
    with pytest.raises(ValueError, match="positive integer"):
        ClusterDraws.for_videos(["p"], draws=0)
    with pytest.raises(ValueError, match="not among the videos"):
        a.resample({"s": np.zeros(3)})


def test_paired_difference_uses_the_same_draws():
    rng = np.random.default_rng(2)
    videos = [f"v{i}" for i in range(8)]
    draws = ClusterDraws.for_videos(videos, draws=1000, seed=0)
    worse = {v: np.array([[rng.integers(5, 10), rng.integers(5, 10), rng.integers(5, 10)]], float) for v in videos}
    same = difference(estimate(draws, worse, lambda s: f1(s).mean(-1)), estimate(draws, worse, lambda s: f1(s).mean(-1)))
    assert same.value == 0.0 and same.interval == (0.0, 0.0) and not same.excludes_zero
    # Better on every video (more tp, fewer fp and fn): better on every draw, so the interval is above 0.
    better = {v: s + np.array([[3.0, -2.0, -2.0]]) for v, s in worse.items()}
    diff = difference(estimate(draws, better, lambda s: f1(s).mean(-1)), estimate(draws, worse, lambda s: f1(s).mean(-1)))
    assert (diff.samples > 0).all() and diff.low > 0 and diff.excludes_zero
    # Independent draws would not pair: the same difference on other draws is not the same samples.
    other = ClusterDraws.for_videos(videos, draws=1000, seed=1)
    unpaired = estimate(draws, better, lambda s: f1(s).mean(-1)).samples - estimate(other, worse, lambda s: f1(s).mean(-1)).samples
    assert not np.allclose(unpaired, diff.samples)


def test_mean_of_runs_is_drawn_draw_by_draw():
    draws = ClusterDraws.for_videos(["a", "b", "c"], draws=100, seed=0)
    one = estimate(draws, {v: np.array([float(i), 1.0, 0.0]) for i, v in enumerate("abc")}, f1)
    two = estimate(draws, {v: np.array([1.0, float(i), 1.0]) for i, v in enumerate("abc")}, f1)
    mean = mean_of([one, two])
    assert mean.value == pytest.approx((one.value + two.value) / 2)
    np.testing.assert_allclose(mean.samples, (one.samples + two.samples) / 2)
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
