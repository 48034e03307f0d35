"""ABAW metrics against scikit-learn and an independent numpy reference."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from affbench import metrics
from affbench.metrics import MetricInputError, au_f1, ccc, expr_f1, va_score


def reference_ccc(x, y):
    """Lin's CCC written from the definition with numpy's population statistics."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (np.std(x) ** 2 + np.std(y) ** 2 + (x.mean() - y.mean()) ** 2)


def sample_stat_ccc(x, y):
    """The (N-1) variant torchmetrics computes: must NOT equal ours."""
    cov = np.cov(x, y, ddof=1)[0, 1]
    return 2 * cov / (np.var(x, ddof=1) + np.var(y, ddof=1) + (x.mean() - y.mean()) ** 2)


def test_ccc_matches_reference_on_random_series():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 500)
    y = 0.6 * x + rng.normal(0, 0.3, 500)
    assert ccc(x, y) == pytest.approx(reference_ccc(x, y), abs=1e-12)


def test_ccc_mean_shift_uses_population_statistics():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    y = x + 0.3  # perfectly correlated, shifted: CCC < 1 and penalised by the mean difference
    value = ccc(x, y)
    # var = 0.02 (population), cov = 0.02, shift^2 = 0.09 -> 0.04 / 0.13
    assert value == pytest.approx(0.04 / 0.13, abs=1e-12)
    assert value != pytest.approx(sample_stat_ccc(x, y), abs=1e-6)


def test_ccc_perfect_and_anti():
    x = np.linspace(-1, 1, 11)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) == pytest.approx(-1.0)


def test_ccc_constant_inputs_give_zero_not_nan():
    y = np.linspace(-1, 1, 9)
    assert ccc(np.zeros(9), y) == 0.0
    assert ccc(np.full(9, 0.5), np.full(9, 0.5)) == 0.0
    assert ccc([0.3], [0.7]) == 0.0  # N = 1


def test_ccc_accepts_torch_tensors():
    x = torch.linspace(-1, 1, 20, dtype=torch.float32)
    y = x**2
    assert ccc(x, y) == pytest.approx(reference_ccc(x.numpy(), y.numpy()), abs=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_ccc_rejects_non_finite(bad):
    with pytest.raises(MetricInputError, match="NaN or infinite"):
        ccc([0.1, bad, 0.3], [0.1, 0.2, 0.3])


def test_ccc_rejects_shape_mismatch_and_empty():
    with pytest.raises(MetricInputError, match=r"shape \(3,\).*shape \(2,\)"):
        ccc([1, 2, 3], [1, 2])
    with pytest.raises(MetricInputError, match="empty"):
        ccc([], [])
    with pytest.raises(MetricInputError, match="1-D"):
        ccc(np.zeros((2, 2)), np.zeros((2, 2)))


def test_va_score_columns_and_mean():
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, (300, 2))
    pred = target * 0.5 + rng.normal(0, 0.2, (300, 2))
    out = va_score(torch.from_numpy(pred), target)
    assert out["valence"] == pytest.approx(reference_ccc(pred[:, 0], target[:, 0]))
    assert out["arousal"] == pytest.approx(reference_ccc(pred[:, 1], target[:, 1]))
    assert out["mean"] == pytest.approx((out["valence"] + out["arousal"]) / 2)
    with pytest.raises(MetricInputError, match=r"\[N, 2\]"):
        va_score(pred[:, :1], target[:, :1])


def sklearn_expr_f1(target, pred):
    return f1_score(target, pred, labels=range(8), average="macro", zero_division=0)


def test_expr_f1_equals_sklearn_macro_including_never_predicted_class():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 8, 400)
    pred = np.where(rng.random(400) < 0.6, target, rng.integers(0, 8, 400))
    pred[pred == 3] = 0  # class 3 is never predicted
    assert expr_f1(pred, target) == pytest.approx(sklearn_expr_f1(target, pred), abs=1e-12)
    assert expr_f1(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(
        sklearn_expr_f1(target, pred), abs=1e-12
    )


def test_expr_f1_averages_over_all_eight_classes_when_a_class_never_occurs():
    rng = np.random.default_rng(5)
    target = rng.choice([0, 1, 2, 4, 5, 6], 300)  # classes 3 and 7 never occur in the target ...
    pred = np.where(rng.random(300) < 0.5, target, rng.choice([0, 1, 2, 4, 5, 6, 7], 300))  # ... 7 is predicted
    expected = sklearn_expr_f1(target, pred)
    assert expr_f1(pred, target) == pytest.approx(expected, abs=1e-12)
    # Averaging over the classes present only (sklearn's default labels) gives a different, larger number.
    assert expr_f1(pred, target) < f1_score(target, pred, average="macro", zero_division=0) - 1e-3
    # Hand check: everything right on two classes out of eight scores 2/8.
    assert expr_f1([0, 0, 5], [0, 0, 5]) == pytest.approx(2 / 8)


def test_sufficient_statistics_add_up_over_parts():
    rng = np.random.default_rng(6)
    x, y = rng.uniform(-1, 1, 120), rng.uniform(-1, 1, 120)
    parts = metrics.ccc_sums(x[:50], y[:50]) + metrics.ccc_sums(x[50:], y[50:])
    assert float(metrics.ccc_from_sums(parts)) == pytest.approx(ccc(x, y), abs=1e-12)
    assert float(metrics.ccc_from_sums(np.zeros(6))) == 0.0  # no frame at all: 0, not NaN
    p, t = rng.integers(0, 8, 120), rng.integers(0, 8, 120)
    counts = metrics.class_counts(p[:70], t[:70], 8) + metrics.class_counts(p[70:], t[70:], 8)
    assert float(metrics.f1_from_counts(counts).mean()) == pytest.approx(sklearn_expr_f1(t, p), abs=1e-12)


def test_expr_f1_single_frame_and_bad_labels():
    assert expr_f1([4], [4]) == 1 / 8  # one class right, seven absent classes count 0
    assert expr_f1([4], [2]) == 0.0
    with pytest.raises(MetricInputError, match=r"0\.\.7"):
        expr_f1([8], [1])
    with pytest.raises(MetricInputError, match=r"0\.\.7"):
        expr_f1([-1], [1])


def test_au_f1_matches_sklearn_per_column_with_zero_for_absent_au():
    rng = np.random.default_rng(3)
    target = (rng.random((200, 12)) < 0.3).astype(int)
    pred = np.where(rng.random((200, 12)) < 0.8, target, 1 - target)
    target[:, 5] = 0
    pred[:, 5] = 0  # no positives in either: counts 0, not 1
    expected = np.mean([f1_score(target[:, i], pred[:, i], zero_division=0) for i in range(12)])
    assert au_f1(pred, target) == pytest.approx(expected)
    per_au = metrics.au_f1_per_au(pred, target)
    assert list(per_au) == list(metrics.AU_NAMES)
    assert per_au["AU10"] == 0.0


def test_au_f1_rejects_wrong_width_and_probabilities():
    with pytest.raises(MetricInputError, match=r"\[N, 12\]"):
        au_f1(np.zeros((4, 11)), np.zeros((4, 11)))
    with pytest.raises(MetricInputError, match="0/1"):
        au_f1(np.full((4, 12), 0.7), np.zeros((4, 12)))
