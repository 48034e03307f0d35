"""Label-only reference rows against hand-computed numbers on a small fixture."""

from __future__ import annotations

import numpy as np
import pytest

from affbench.data.shard_manifest import LabelStatistics
from affbench.frame_stats import RunFrames, task_scoring
from affbench.references import references_for


def frames(task, labels):
    """RunFrames of `labels` (video -> [n, L], invalid rows marked as the task's files mark them)."""
    invalid = -5.0 if task == "va" else -1.0
    true = {v: np.asarray(t, float) for v, t in labels.items()}
    scored = {v: np.all(t != invalid, axis=1) for v, t in true.items()}
    return RunFrames(task, {v: np.zeros_like(t) for v, t in true.items()}, true, scored)


def label_stats(rows):
    stats = LabelStatistics()
    rows = np.asarray(rows, float)
    stats.add(rows, np.ones(len(rows), bool))
    return stats.to_dict()


def score(task, ref, metric):
    return float(task_scoring(task).scores[metric](sum(ref.video_stats.values())))


def test_va_constant_mean_is_the_training_mean_and_scores_zero():
    val = frames("va", {"a": [[0.1, 0.2], [0.3, -0.4], [-5, -5]], "b": [[0.5, 0.0]]})
    (ref,) = references_for(val, label_stats([[0.2, 0.4], [0.4, 0.0]]))
    assert ref.name == "constant" and ref.detail["training_mean"] == pytest.approx([0.3, 0.2])
    assert ref.video_stats["a"][0][0] == 2  # the invalid frame is not scored
    for metric in ("valence", "arousal", "mean"):
        assert score("va", ref, metric) == pytest.approx(0.0, abs=1e-12)


def test_expr_best_constant_class_and_class_prior_by_hand():
    # Scored frames: a -> 0, 0, 1 (one invalid), b -> 1, 1, 1, 2: N = 7, class counts 2, 4, 1.
    val = frames("expr", {"a": [[0], [0], [1], [-1]], "b": [[1], [1], [1], [2]]})
    train = [[0]] * 5 + [[1]] * 3 + [[7]] * 2  # training prior: 0.5, 0.3, 0, ..., 0, 0.2
    constant, prior = references_for(val, label_stats(train))
    # Constant class c: tp = n_c, fp = N - n_c, fn = 0 -> F1_c = 2 n_c / (N + n_c); the others score 0.
    assert constant.detail["class"] == 1
    assert score("expr", constant, "f1") == pytest.approx((8 / 11) / 8)
    # Expected counts: tp = n_c q_c, fp = (N - n_c) q_c, fn = n_c (1 - q_c).
    f1_0 = 2 * 1.0 / (2 * 1.0 + 2.5 + 1.0)  # n_0 = 2, q = 0.5
    f1_1 = 2 * 1.2 / (2 * 1.2 + 0.9 + 2.8)  # n_1 = 4, q = 0.3
    assert prior.detail["training_prior"] == pytest.approx([0.5, 0.3, 0, 0, 0, 0, 0, 0.2])
    assert score("expr", prior, "f1") == pytest.approx((f1_0 + f1_1) / 8)


def test_au_all_on_and_prior_by_hand():
    val_a = np.zeros((4, 12))
    val_a[:2, 0] = 1  # AU1 on in 2 of 5 scored frames
    val_a[:, 1] = 1  # AU2 on everywhere
    val_b = np.zeros((2, 12))
    val_b[0] = -1  # an invalid row
    train = np.zeros((4, 12))
    train[:1, 0] = 1  # AU1 prior 0.25
    train[:, 1] = 1  # AU2 prior 1
    constant, prior = references_for(frames("au", {"a": val_a, "b": val_b}), label_stats(train))
    # All on: F1_j = 2 pos_j / (N + pos_j), N = 5 scored frames; AUs never on score 0.
    assert score("au", constant, "f1") == pytest.approx((2 * 2 / (5 + 2) + 2 * 4 / (5 + 4)) / 12)
    au1 = 2 * 0.5 / (2 * 0.5 + 3 * 0.25 + 2 * 0.75)  # tp 2 x .25, fp 3 x .25, fn 2 x .75
    au2 = 2 * 4 / (2 * 4 + 1 * 1 + 0)  # prior 1: predicted on in every frame
    assert score("au", prior, "f1") == pytest.approx((au1 + au2) / 12)


def test_expected_counts_match_a_seeded_draw_on_many_frames():
    rng = np.random.default_rng(0)
    labels = rng.choice(8, 60_000, p=[0.3, 0.05, 0.05, 0.05, 0.25, 0.1, 0.1, 0.1])[:, None]
    val = frames("expr", {"v": labels})
    train = rng.choice(8, 5000, p=[0.2, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1])[:, None]
    _, prior = references_for(val, label_stats(train))
    drawn = rng.choice(8, len(labels), p=prior.detail["training_prior"])
    sampled = task_scoring("expr").stats(drawn[:, None].astype(float), labels.astype(float))
    assert score("expr", prior, "f1") == pytest.approx(float(task_scoring("expr").scores["f1"](sampled)), abs=0.005)
