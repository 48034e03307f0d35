"""The ABAW metrics, exactly as the challenge scores them (6th-8th editions).

- ``ccc``: Lin's concordance correlation coefficient with population (1/N) statistics, as numpy's ``var``/``std``
  compute them. torchmetrics uses sample (N-1) statistics and does not match the challenge.
- ``va_score``: CCC of valence and of arousal over all frames at once (not averaged per video), and their mean.
- ``expr_f1``: macro F1 over the 8 expression classes, as ``sklearn.metrics.f1_score(average="macro")``.
- ``au_f1``: mean over the 12 action units of binary F1; an AU with no positives in prediction or target
  scores 0.

Every function is pure, accepts numpy arrays or torch tensors, and computes in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")


class MetricInputError(ValueError):
    """Metric input with the wrong shape, non-finite values or values outside the label set."""


def as_numpy(x: Any, name: str) -> np.ndarray:
    """A float64/int numpy view of a numpy array, torch tensor or sequence."""
    if hasattr(x, "detach"):  # torch tensor, on any device
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise MetricInputError(f"{name}: expected numbers, got an object array")
    return arr


def _finite_float(x: Any, name: str) -> np.ndarray:
    arr = as_numpy(x, name).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise MetricInputError(f"{name}: {bad} value(s) are NaN or infinite; metrics need finite numbers")
    return arr


def _same_shape(pred: np.ndarray, target: np.ndarray, what: str) -> None:
    if pred.shape != target.shape:
        raise MetricInputError(f"{what}: pred has shape {pred.shape} but target has shape {target.shape}")


def ccc(pred: Any, target: Any) -> float:
    """Lin's concordance correlation coefficient of two 1-D series, population statistics.

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), with cov and var divided by N. When both
    series are constant and equal the denominator is 0: that is a perfect, if degenerate, agreement only in a
    trivial sense, so it scores 0 (no covariance), never NaN.
    """
    x = _finite_float(pred, "pred")
    y = _finite_float(target, "target")
    _same_shape(x, y, "ccc")
    if x.ndim != 1:
        raise MetricInputError(f"ccc: expected 1-D series, got shape {x.shape}")
    if x.size == 0:
        raise MetricInputError("ccc: empty input; at least one frame is needed")
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    denom = vx + vy + (mx - my) ** 2
    if denom == 0.0:
        return 0.0
    return float(2.0 * cov / denom)


def va_score(pred: Any, target: Any) -> dict[str, float]:
    """CCC of valence (column 0) and arousal (column 1), and their mean: the ABAW VA score."""
    p = _finite_float(pred, "pred")
    t = _finite_float(target, "target")
    _same_shape(p, t, "va_score")
    if p.ndim != 2 or p.shape[1] != 2:
        raise MetricInputError(f"va_score: expected [N, 2] (valence, arousal), got shape {p.shape}")
    valence = ccc(p[:, 0], t[:, 0])
    arousal = ccc(p[:, 1], t[:, 1])
    return {"valence": valence, "arousal": arousal, "mean": (valence + arousal) / 2.0}


def _labels(x: Any, name: str, n_classes: int) -> np.ndarray:
    arr = _finite_float(x, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise MetricInputError(f"{name}: expected class indices [N], got shape {arr.shape}")
    if np.any(arr != np.round(arr)) or np.any((arr < 0) | (arr >= n_classes)):
        raise MetricInputError(f"{name}: class indices must be integers in 0..{n_classes - 1}")
    return arr.astype(np.int64)


def expr_f1(pred_labels: Any, target: Any) -> float:
    """Macro F1 over the expression classes present in target or prediction (sklearn's macro average)."""
    from sklearn.metrics import f1_score

    p = _labels(pred_labels, "pred_labels", len(EXPR_CLASSES))
    t = _labels(target, "target", len(EXPR_CLASSES))
    _same_shape(p, t, "expr_f1")
    if p.size == 0:
        raise MetricInputError("expr_f1: empty input; at least one frame is needed")
    return float(f1_score(t, p, average="macro", zero_division=0))


def binary_f1(pred: np.ndarray, target: np.ndarray) -> float:
    """F1 of one binary column; 0 when neither prediction nor target has a positive."""
    tp = float(np.sum((pred == 1) & (target == 1)))
    fp = float(np.sum((pred == 1) & (target == 0)))
    fn = float(np.sum((pred == 0) & (target == 1)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def au_f1_per_au(pred: Any, target: Any) -> dict[str, float]:
    """Binary F1 of each of the 12 action units, keyed by AU name."""
    p = _finite_float(pred, "pred")
    t = _finite_float(target, "target")
    _same_shape(p, t, "au_f1")
    if p.ndim != 2 or p.shape[1] != len(AU_NAMES):
        raise MetricInputError(f"au_f1: expected [N, {len(AU_NAMES)}] ({', '.join(AU_NAMES)}), got {p.shape}")
    for name, arr in (("pred", p), ("target", t)):
        if not np.all((arr == 0) | (arr == 1)):
            raise MetricInputError(f"au_f1: {name} must hold 0/1 values (threshold probabilities first)")
    return {au: binary_f1(p[:, i], t[:, i]) for i, au in enumerate(AU_NAMES)}


def au_f1(pred: Any, target: Any) -> float:
    """Mean binary F1 over the 12 action units: the ABAW AU score."""
    return float(np.mean(list(au_f1_per_au(pred, target).values())))
