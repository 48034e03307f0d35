"""The three ABAW tasks: valence-arousal regression, expression classification, action-unit detection.

A task owns what is specific to its labels: the head size, the masked loss, how raw head outputs become
submission values, and which ABAW metric scores them. ``pred`` is always the raw head output (logits, or
pre-activation VA values); leading dimensions may be anything (e.g. [B,T]) as long as pred, target and valid
agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affbench import metrics as abaw
from affbench.frame_stats import RunFrames, TaskScoring, mean_f1
from affbench.model import check_choice
from affbench.references import (
    Reference,
    all_labels_on,
    column_rates,
    constant_stats,
    expected_counts,
)
from affbench.stages.evaluate import mode_filter, moving_average
from affbench.task_contract import check_metric_names

VA_NAMES = ("valence", "arousal")


def _to_torch(x: Any) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy): postprocessing answers in the kind it was given."""
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x)), True


def _back(x: torch.Tensor, was_numpy: bool) -> Any:
    return x.detach().cpu().numpy() if was_numpy else x


class AffectTask(nn.Module):
    """Shared checks and the masked-loss plumbing of the ABAW tasks."""

    name: str = ""
    label_names: tuple[str, ...] = ()
    out_dim: int = 0
    label_dim: int = 0
    primary_metric: str = ""
    invalid_value: float = -1.0  # the annotation files' marker of an unusable label

    def _flatten(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        where = f"task '{self.name}'.loss"
        if pred.shape[-1] != self.out_dim:
            raise ValueError(f"{where}: pred must have {self.out_dim} outputs in its last dimension "
                             f"([..., {self.out_dim}]), got shape {tuple(pred.shape)}")
        if target.shape[-1] != self.label_dim or target.shape[:-1] != pred.shape[:-1]:
            raise ValueError(f"{where}: target must have shape {tuple(pred.shape[:-1]) + (self.label_dim,)} "
                             f"to match pred {tuple(pred.shape)}, got {tuple(target.shape)}")
        if valid is None:
            valid = self.valid_rows(target)
        if tuple(valid.shape) != tuple(pred.shape[:-1]):
            raise ValueError(f"{where}: valid must have shape {tuple(pred.shape[:-1])} (one flag per row), got "
                             f"{tuple(valid.shape)}")
        return (pred.reshape(-1, self.out_dim), target.reshape(-1, self.label_dim).to(pred.device),
                valid.reshape(-1).to(device=pred.device, dtype=torch.bool))

    def valid_rows(self, target: Any) -> Any:
        """Rows whose labels are usable (not the file's invalid marker)."""
        if isinstance(target, torch.Tensor):
            return (target != self.invalid_value).all(dim=-1)
        return np.all(np.asarray(target) != self.invalid_value, axis=-1)

    def _metric_rows(self, values: Any, target: Any, valid: Any) -> tuple[np.ndarray, np.ndarray]:
        v = abaw.as_numpy(values, "values")
        t = abaw.as_numpy(target, "target")
        if v.ndim == 1 and self.label_dim == 1:
            v = v[:, None]
        if t.ndim == 1 and self.label_dim == 1:
            t = t[:, None]
        if v.shape != t.shape or v.ndim != 2 or v.shape[1] != self.label_dim:
            raise ValueError(f"task '{self.name}'.metrics: values and target must both be [N, {self.label_dim}], "
                             f"got {v.shape} and {t.shape}")
        keep = self.valid_rows(t) if valid is None else abaw.as_numpy(valid, "valid").astype(bool)
        if keep.shape != (len(t),):
            raise ValueError(f"task '{self.name}'.metrics: valid must be [N] = [{len(t)}], got {keep.shape}")
        if not keep.any():
            raise ValueError(f"task '{self.name}'.metrics: no valid rows to score")
        return v[keep], t[keep]

    def probabilities(self, pred: Any) -> Any:
        """Class probabilities of raw outputs (None for regression tasks)."""
        return None

    def _add_metrics(self, metrics: Sequence[str] | None) -> None:
        """Registered metrics the config adds to this task's own (the ``metrics`` option)."""
        self.extra_metrics = check_metric_names(metrics, f"task '{self.name}'")


class VATask(AffectTask):
    """Valence and arousal in [-1, 1]; loss 1 - CCC per dimension over the batch's valid rows."""

    name = "va"
    label_names = VA_NAMES
    out_dim = 2
    label_dim = 2
    primary_metric = "mean"
    invalid_value = -5.0
    annotation = "va"
    submission_file = "VA_submission.txt"
    report_columns = (("mean", "VA"),)
    detail_columns = (("valence", "Valence CCC"), ("arousal", "Arousal CCC"))
    metric_label = "mean CCC (valence, arousal)"
    output_kind = "continuous"
    plots = ("traces",)
    value_range = (-1.0, 1.0)
    reference_names = {"constant": "constant mean"}

    def __init__(self, *, output: str = "tanh", loss_reduction: str = "mean", loss_statistics: str = "population",
                 eps: float = 1e-8, metrics: Sequence[str] | None = None) -> None:
        super().__init__()
        self._add_metrics(metrics)
        self.output = check_choice(output, "output", ("tanh", "linear"), "task 'va'")
        # The authors' earlier code sums the two (1 - CCC) terms and uses sample (N - 1) statistics in the loss;
        # the ABAW metric uses population statistics and averages the two.
        self.loss_reduction = check_choice(loss_reduction, "loss_reduction", ("mean", "sum"), "task 'va'")
        self.loss_statistics = check_choice(loss_statistics, "loss_statistics", ("population", "sample"),
                                            "task 'va'")
        self.eps = float(eps)

    def activate(self, pred: torch.Tensor) -> torch.Tensor:
        """Raw head outputs -> VA values (tanh keeps them in [-1, 1] during training)."""
        return torch.tanh(pred) if self.output == "tanh" else pred

    def loss(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """1 - CCC of valence and arousal on valid rows (mean of the two, or their sum); 0 if none.

        Population statistics by default, as the ABAW metric; ``loss_statistics: sample`` divides by N - 1.
        """
        pred, target, valid = self._flatten(pred, target, valid)
        if not bool(valid.any()):
            return pred.sum() * 0.0
        x = self.activate(pred[valid]).float()
        y = target[valid].float()
        sample = self.loss_statistics == "sample" and x.shape[0] > 1
        n = x.shape[0] - 1 if sample else x.shape[0]
        mx, my = x.mean(0), y.mean(0)
        cov = ((x - mx) * (y - my)).sum(0) / n
        denom = x.var(0, unbiased=sample) + y.var(0, unbiased=sample) + (mx - my) ** 2
        ccc = 2.0 * cov / (denom + self.eps)
        terms = 1.0 - ccc
        return terms.sum() if self.loss_reduction == "sum" else terms.mean()

    def postprocess(self, pred: Any) -> Any:
        """Submission values: activated outputs clipped to [-1, 1]."""
        p, was_numpy = _to_torch(pred)
        return _back(self.activate(p.float()).clamp(-1.0, 1.0), was_numpy)

    def submission_values(self, raw: np.ndarray, smoothing: int) -> np.ndarray:
        """Clipped activated values, then a centred moving average over `smoothing` frames (clipped again)."""
        values = self.postprocess(raw)
        return np.clip(moving_average(values, smoothing), -1.0, 1.0) if smoothing > 1 else values

    def metrics(self, values: Any, target: Any, valid: Any = None) -> dict[str, float]:
        """valence, arousal and mean CCC over valid rows (ABAW VA score)."""
        v, t = self._metric_rows(values, target, valid)
        return abaw.va_score(v, t)

    @property
    def scoring(self) -> TaskScoring:
        """CCC sums per dimension: valence, arousal and their mean follow from a video's sums."""
        return TaskScoring(
            lambda p, t: np.stack([abaw.ccc_sums(p[:, i], t[:, i]) for i in range(2)]),
            {"valence": lambda s: abaw.ccc_from_sums(s[..., 0, :]),
             "arousal": lambda s: abaw.ccc_from_sums(s[..., 1, :]),
             "mean": lambda s: abaw.ccc_from_sums(s).mean(axis=-1)})

    def references(self, frames: RunFrames, label_stats: Mapping[str, Any]) -> list[Reference]:
        """The training mean (valence, arousal) as a constant: CCC 0, how far a row is from knowing nothing."""
        mean = np.array([float(c["mean"]) for c in label_stats["columns"]])
        return [Reference(self.name, "constant", constant_stats(frames, mean), {"training_mean": mean.tolist()})]


class ExprTask(AffectTask):
    """Eight expression classes; cross-entropy with optional label smoothing and class weights."""

    name = "expr"
    label_names = abaw.EXPR_CLASSES
    out_dim = 8
    label_dim = 1
    primary_metric = "f1"
    invalid_value = -1.0
    annotation = "expr"
    prediction_columns = ("expression",)
    submission_file = "EXPR_submission.txt"
    integer_values = True
    report_columns = (("f1", "Expr"),)
    detail_columns = (("f1", "Expr F1"),)
    metric_label = "macro F1 (8 classes)"
    output_kind = "classes"
    plots = ("confusion",)
    # The best constant class is picked on the scored frames: it is selected on the reported frames.
    reference_names = {"constant": "best constant class", "prior": "class prior"}
    references_selected_on_scored = ("constant",)

    def __init__(self, *, label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None,
                 metrics: Sequence[str] | None = None) -> None:
        super().__init__()
        self._add_metrics(metrics)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"task 'expr': label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(list(class_weights), dtype=torch.float32)
            if weights.shape != (self.out_dim,) or bool((weights < 0).any()):
                raise ValueError(f"task 'expr': class_weights must be {self.out_dim} non-negative numbers "
                                 f"({', '.join(self.label_names)}), got {list(class_weights)}")
        self.register_buffer("class_weights", weights)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over valid rows (weighted mean with class_weights); 0 if none."""
        pred, target, valid = self._flatten(pred, target, valid)
        if not bool(valid.any()):
            return pred.sum() * 0.0
        labels = target[valid, 0].round().long()
        if bool(((labels < 0) | (labels >= self.out_dim)).any()):
            raise ValueError(f"task 'expr'.loss: valid target classes must be in 0..{self.out_dim - 1}")
        return F.cross_entropy(pred[valid].float(), labels, weight=self.class_weights,
                               label_smoothing=self.label_smoothing)

    def probabilities(self, pred: Any) -> Any:
        """Softmax over the 8 classes."""
        p, was_numpy = _to_torch(pred)
        return _back(p.float().softmax(-1), was_numpy)

    def postprocess(self, pred: Any) -> Any:
        """Submission values: the argmax class index (int64) per row."""
        p, was_numpy = _to_torch(pred)
        return _back(p.argmax(-1), was_numpy)

    def submission_values(self, raw: np.ndarray, smoothing: int) -> np.ndarray:
        """The argmax class per frame, then a centred mode filter over `smoothing` frames."""
        return mode_filter(raw.argmax(axis=1), smoothing, self.out_dim).reshape(-1, 1)

    def metrics(self, values: Any, target: Any, valid: Any = None) -> dict[str, float]:
        """Macro F1 over all 8 classes, absent ones counting 0 (ABAW EXPR score), and accuracy, over valid rows."""
        v, t = self._metric_rows(values, target, valid)
        return {"f1": abaw.expr_f1(v[:, 0], t[:, 0]), "accuracy": float(np.mean(v[:, 0] == t[:, 0]))}

    @property
    def scoring(self) -> TaskScoring:
        """tp/fp/fn per class; macro F1 over the 8 classes follows from a video's counts."""
        return TaskScoring(lambda p, t: abaw.class_counts(p[:, 0], t[:, 0], self.out_dim), {"f1": mean_f1})

    def references(self, frames: RunFrames, label_stats: Mapping[str, Any]) -> list[Reference]:
        """The best constant class (chosen on the scored frames, so optimistic) and the training class prior."""
        best, best_score, stats = 0, -1.0, {}
        for c in range(self.out_dim):  # the F1 of a constant class grows with its count: keep the first best
            candidate = constant_stats(frames, np.array([c]))
            score = float(mean_f1(sum(candidate.values())))
            if score > best_score:
                best, best_score, stats = c, score, candidate
        prior = column_rates(label_stats, self.out_dim)[0]
        onehot = {v: np.eye(self.out_dim)[t[:, 0].astype(np.int64)] for v, t in frames.scored_labels().items()}
        return [
            Reference(self.name, "constant", stats, {"class": best, "class_name": self.label_names[best],
                                                      "chosen_on": "the scored frames"}),
            Reference(self.name, "prior", {v: expected_counts(t, prior) for v, t in onehot.items()},
                      {"training_prior": prior.tolist(), "statistic": "expected confusion counts"}),
        ]


class AUTask(AffectTask):
    """Twelve action units; BCE-with-logits (optional pos_weight), per-AU thresholds on probabilities."""

    name = "au"
    label_names = abaw.AU_NAMES
    out_dim = 12
    label_dim = 12
    primary_metric = "f1"
    invalid_value = -1.0
    annotation = "au"
    submission_file = "AU_submission.txt"
    integer_values = True
    report_columns = (("f1", "AU"),)
    detail_columns = (("f1", "AU F1"),)
    metric_label = "mean F1 (12 AUs)"
    output_kind = "multilabel"
    plots = ("per_label_f1",)
    reference_names = {"constant": "all AUs on", "prior": "AU prior"}

    def __init__(self, *, pos_weight: Sequence[float] | None = None, threshold: float | Sequence[float] = 0.5,
                 metrics: Sequence[str] | None = None) -> None:
        super().__init__()
        self._add_metrics(metrics)
        weights = None
        if pos_weight is not None:
            weights = torch.as_tensor(list(pos_weight), dtype=torch.float32)
            if weights.shape != (self.out_dim,) or bool((weights <= 0).any()):
                raise ValueError(f"task 'au': pos_weight must be {self.out_dim} positive numbers "
                                 f"({', '.join(self.label_names)}), got {list(pos_weight)}")
        self.register_buffer("pos_weight", weights)
        self.register_buffer("_thresholds", torch.full((self.out_dim,), 0.5))
        self.thresholds = threshold

    @property
    def thresholds(self) -> torch.Tensor:
        """Per-AU probability thresholds [12]."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, value: float | Sequence[float]) -> None:
        t = torch.as_tensor(value, dtype=torch.float32).flatten()
        if t.numel() == 1:
            t = t.expand(self.out_dim)
        if t.shape != (self.out_dim,) or bool(((t <= 0) | (t >= 1)).any()):
            raise ValueError(f"task 'au': threshold must be one number or {self.out_dim} numbers in (0, 1), "
                             f"got {value!r}")
        self._thresholds.copy_(t)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """BCE-with-logits averaged over valid rows' labelled AUs (entries of -1 are skipped); 0 if none."""
        pred, target, valid = self._flatten(pred, target, valid)
        keep = valid[:, None] & (target >= 0)
        if not bool(keep.any()):
            return pred.sum() * 0.0
        per = F.binary_cross_entropy_with_logits(pred.float(), target.clamp(min=0).float(), reduction="none",
                                                 pos_weight=self.pos_weight)
        return per[keep].mean()

    def probabilities(self, pred: Any) -> Any:
        """Sigmoid per AU."""
        p, was_numpy = _to_torch(pred)
        return _back(torch.sigmoid(p.float()), was_numpy)

    def postprocess(self, pred: Any) -> Any:
        """Submission values: 1 where sigmoid(pred) >= the AU's threshold, else 0 (int64)."""
        p, was_numpy = _to_torch(pred)
        prob = torch.sigmoid(p.float())
        return _back((prob >= self._thresholds.to(prob.device)).long(), was_numpy)

    def tune_thresholds(self, prob: Any, target: Any, grid: Sequence[float] | None = None) -> list[float]:
        """Set each AU's threshold to the grid value maximising its F1 on (validation) probabilities."""
        p = abaw.as_numpy(prob, "prob").astype(np.float64)
        t = abaw.as_numpy(target, "target")
        if p.shape != t.shape or p.ndim != 2 or p.shape[1] != self.out_dim:
            raise ValueError(f"task 'au'.tune_thresholds: prob and target must be [N, {self.out_dim}], got "
                             f"{p.shape} and {t.shape}")
        grid = np.arange(0.05, 0.951, 0.05) if grid is None else np.asarray(list(grid), dtype=np.float64)
        best = []
        for j in range(self.out_dim):
            rows = t[:, j] >= 0
            scores = [abaw.binary_f1((p[rows, j] >= g).astype(np.int64), t[rows, j]) for g in grid]
            best.append(float(grid[int(np.argmax(scores))]))  # first best: ties keep the lower threshold
        self.thresholds = best
        return best

    def _smoothed_probabilities(self, raw: np.ndarray, smoothing: int) -> np.ndarray:
        prob = self.probabilities(raw)
        return moving_average(prob, smoothing) if smoothing > 1 else prob

    def submission_values(self, raw: np.ndarray, smoothing: int) -> np.ndarray:
        """Sigmoid probabilities, a centred moving average over `smoothing` frames, then the per-AU thresholds."""
        prob = self._smoothed_probabilities(raw, smoothing)
        return (prob >= self._thresholds.cpu().numpy()).astype(np.float32)

    def tune(self, raw: Sequence[np.ndarray], labels: Sequence[np.ndarray], valid: Sequence[np.ndarray],
             smoothing: int) -> list[float]:
        """Per-AU thresholds maximising F1 on the valid frames of these (selection split) videos."""
        prob = np.concatenate([self._smoothed_probabilities(r, smoothing)[k] for r, k in zip(raw, valid, strict=True)])
        target = np.concatenate([t[k] for t, k in zip(labels, valid, strict=True)])
        return self.tune_thresholds(prob.astype(np.float32), target)

    def metrics(self, values: Any, target: Any, valid: Any = None) -> dict[str, float]:
        """Mean F1 over the 12 AUs (ABAW AU score) and each AU's F1, over valid rows."""
        v, t = self._metric_rows(values, target, valid)
        per = abaw.au_f1_per_au(v, t)
        return {"f1": float(np.mean(list(per.values()))), **{f"f1_{k}": val for k, val in per.items()}}

    @property
    def scoring(self) -> TaskScoring:
        """tp/fp/fn per AU; the mean F1 over the 12 AUs follows from a video's counts."""
        return TaskScoring(abaw.binary_counts, {"f1": mean_f1})

    def references(self, frames: RunFrames, label_stats: Mapping[str, Any]) -> list[Reference]:
        """Every AU on (F1 2p / (1 + p)), and each AU on at its training rate."""
        rate = column_rates(label_stats, 2)[:, 1]
        return [
            Reference(self.name, "constant", all_labels_on(frames), {"prediction": 1}),
            Reference(self.name, "prior", {v: expected_counts(t, rate) for v, t in frames.scored_labels().items()},
                      {"training_prior": rate.tolist(), "statistic": "expected confusion counts"}),
        ]
