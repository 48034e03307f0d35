"""The ABAW metrics, exactly as the challenge scores them (6th-8th editions).

- ``ccc``: Lin's concordance correlation coefficient with population (1/N) statistics, as numpy's ``var``/``std``
  compute them. torchmetrics uses sample (N-1) statistics and does not match the challenge.
- ``va_score``: CCC of valence and of arousal over all frames at once (not averaged per video), and their mean.
- ``expr_f1``: macro F1 over all 8 expression classes, P = sum_c F1_c / 8; a class absent from both target and
  prediction scores 0 (``sklearn.metrics.f1_score(labels=range(8), average="macro", zero_division=0)``).
- ``au_f1``: mean over the 12 action units of binary F1; an AU with no positives in prediction or target
  scores 0.

Both F1 scores come from confusion counts (``class_counts`` -> ``f1_from_counts``) and CCC can be computed
from six sums (``ccc_sums`` -> ``ccc_from_sums``): these sufficient statistics add up over videos, which is
what lets affbench.bootstrap resample whole videos cheaply.

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


CCC_SUMS = ("n", "sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy")


def ccc_sums(pred: Any, target: Any) -> np.ndarray:
    """float64 [6] = (n, sum x, sum y, sum x^2, sum y^2, sum xy) of two 1-D series (x = pred, y = target).

    Sums of disjoint sets of frames add up, and ``ccc_from_sums`` of the total is the CCC of the frames
    together; an empty series gives zeros.
    """
    x = _finite_float(pred, "pred")
    y = _finite_float(target, "target")
    _same_shape(x, y, "ccc_sums")
    if x.ndim != 1:
        raise MetricInputError(f"ccc_sums: expected 1-D series, got shape {x.shape}")
    return np.array([x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()], dtype=np.float64)


def ccc_from_sums(sums: Any) -> np.ndarray:
    """CCC (population statistics, as ``ccc``) of every sum vector in ``sums [..., 6]``; shape ``[...]``.

    A denominator of 0 (constant and equal series, or no frame at all) scores 0, as ``ccc`` does.
    """
    s = np.asarray(sums, dtype=np.float64)
    if s.shape[-1:] != (len(CCC_SUMS),):
        raise MetricInputError(f"ccc_from_sums: expected [..., 6] ({', '.join(CCC_SUMS)}), got {s.shape}")
    n, sx, sy, sxx, syy, sxy = np.moveaxis(s, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my = sx / n, sy / n
        vx, vy = sxx / n - mx * mx, syy / n - my * my
        cov = sxy / n - mx * my
        denom = vx + vy + (mx - my) ** 2
        out = 2.0 * cov / denom
    return np.where((n > 0) & (denom != 0.0), out, 0.0)


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


COUNTS = ("tp", "fp", "fn")


def f1_from_counts(counts: Any) -> np.ndarray:
    """F1 = 2 tp / (2 tp + fp + fn) of every count vector in ``counts [..., 3]`` (tp, fp, fn); shape ``[...]``.

    A class or AU with no positive in prediction or target (denominator 0) scores 0.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.shape[-1:] != (len(COUNTS),):
        raise MetricInputError(f"f1_from_counts: expected [..., 3] (tp, fp, fn), got {c.shape}")
    tp, fp, fn = np.moveaxis(c, -1, 0)
    denom = 2.0 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, 2.0 * tp / denom, 0.0)


def class_counts(pred_labels: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """float64 [n_classes, 3]: (tp, fp, fn) of each class, one-vs-rest, from class indices [N]."""
    p = np.asarray(pred_labels, dtype=np.int64)
    t = np.asarray(target, dtype=np.int64)
    tp = np.bincount(t[p == t], minlength=n_classes)
    predicted = np.bincount(p, minlength=n_classes)
    actual = np.bincount(t, minlength=n_classes)
    return np.stack([tp, predicted - tp, actual - tp], axis=-1).astype(np.float64)


def binary_counts(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """float64 [..., 3]: (tp, fp, fn) of each 0/1 column of ``pred``/``target [N, ...]`` (summed over N)."""
    p, t = np.asarray(pred), np.asarray(target)
    tp = ((p == 1) & (t == 1)).sum(axis=0)
    fp = ((p == 1) & (t == 0)).sum(axis=0)
    fn = ((p == 0) & (t == 1)).sum(axis=0)
    return np.stack([tp, fp, fn], axis=-1).astype(np.float64)


def expr_f1(pred_labels: Any, target: Any) -> float:
    """Macro F1 over all 8 expression classes: sum_c F1_c / 8, a class absent from target and prediction 0."""
    p = _labels(pred_labels, "pred_labels", len(EXPR_CLASSES))
    t = _labels(target, "target", len(EXPR_CLASSES))
    _same_shape(p, t, "expr_f1")
    if p.size == 0:
        raise MetricInputError("expr_f1: empty input; at least one frame is needed")
    return float(f1_from_counts(class_counts(p, t, len(EXPR_CLASSES))).mean())


def binary_f1(pred: np.ndarray, target: np.ndarray) -> float:
    """F1 of one binary column; 0 when neither prediction nor target has a positive."""
    return float(f1_from_counts(binary_counts(pred, target)))


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
    per_au = f1_from_counts(binary_counts(p, t))
    return {au: float(per_au[i]) for i, au in enumerate(AU_NAMES)}


def au_f1(pred: Any, target: Any) -> float:
    """Mean binary F1 over the 12 action units: the ABAW AU score."""
    return float(np.mean(list(au_f1_per_au(pred, target).values())))
