"""The task contract: what core asks of a task, with the answer a minimal task gets by default.

A task (``affbench_register_tasks``) must provide ``name``, ``label_names``, ``out_dim``, ``label_dim``,
``loss``, ``metrics``, ``primary_metric``, ``postprocess`` and ``probabilities``. Everything else core does with
a task (post-processing, threshold tuning, the prediction CSV, the submission file, the report's columns,
references and plots) goes through the functions below, which read the optional attributes here:

============================  =====================================================================================
``annotation``                the dataset annotation set it reads its labels from (one of the dataset's ``tasks()``),
                              and whose ABAW submission format it follows when its columns match (default: its name)
``derive_labels(labels,       labels it derives from that set: one video's labels [n, k] and valid flags [n] as read
valid)``                      -> (labels [n, label_dim], valid [n]) it learns and is scored on, e.g. the sign of
                              valence from the VA set (default: the labels as read)
``submission_values(raw, w)`` merged raw outputs [n, out_dim] of one video, smoothing window w -> values
                              [n, label_dim] (default: ``postprocess``, no smoothing)
``tune(raw, labels, valid,    fit post-processing (e.g. thresholds) on the selection split's videos; returns the
w)``                          state to store (a list of floats) or None; ``thresholds`` is where it is kept
``prediction_columns``        the value columns of the per-frame CSV (default ``label_names``)
``submission_file``           file name of its submission (default ``<name>_submission.txt``)
``submission_columns``        the submission header after image_location (default ``label_names``)
``integer_values``            values print as integers (classes, 0/1) rather than 6-decimal floats
``report_columns``            ((metric, title), ...) of Table 2 (default: the primary metric under the name)
``detail_columns``            ((metric, title), ...) of Table 1 (default: ``report_columns``)
``metric_label``              axis label of the primary metric in plots
``scoring``                   a :class:`affbench.frame_stats.TaskScoring`: additive per-video statistics, so the
                              report's bootstrap can rescore runs (None: metrics.json values, no interval)
``valid_rows(labels)``         bool [n]: label rows [n, label_dim] usable by its rule, on top of the annotation's valid
                              flags, when the report rescores frames (default: every row)
``references(frames, stats)`` label-only reference predictors (affbench.references) and ``reference_names``
``output_kind``               ``continuous`` (values), ``classes`` (one class index) or ``multilabel`` (0/1 per
                              label): how its values are drawn and printed (default ``continuous``)
``metric_names``              registered metrics (``affbench_register_metrics``) it reports beside its own
                              ``metrics``; a config adds more with the task option ``metrics: [...]``
``plots``                     report plots that suit it: ``traces`` (continuous), ``confusion`` (classes),
                              ``per_label_f1`` (multi-label); default: the one of its output kind
``value_range``               (low, high) of continuous values, for trace axes
============================  =====================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from affbench.data.records import VideoRecord

# output kind -> the report plot that suits it
KIND_PLOTS = {"continuous": "traces", "classes": "confusion", "multilabel": "per_label_f1"}
PLOT_KINDS = tuple(KIND_PLOTS.values())


@cache
def task_named(name: str) -> Any:
    """The registered task `name` with default options: how the report reads a run's task contract."""
    import affbench

    return affbench.create("task", name)


def annotation(task: Any) -> str:
    return str(getattr(task, "annotation", None) or task.name)


def task_record(task: Any, record: VideoRecord) -> VideoRecord:
    """One video's record as the task learns and is scored on it: the annotation set's labels as read, or the
    labels the task derives from them (same frames and images)."""
    derive = getattr(task, "derive_labels", None)
    if derive is None:
        return record
    labels, valid = derive(np.asarray(record.labels, np.float32), np.asarray(record.valid, bool))
    labels, valid = np.asarray(labels, np.float32), np.asarray(valid, bool)
    expected = (record.n_frames, int(task.label_dim))
    if labels.shape != expected or valid.shape != expected[:1]:
        raise ValueError(f"task '{task.name}'.derive_labels: video '{record.video}' must give labels {expected} and "
                         f"valid ({expected[0]},), got {labels.shape} and {valid.shape}")
    return VideoRecord(record.video, record.source, record.images, labels, valid)


def prediction_columns(task: Any) -> tuple[str, ...]:
    return tuple(getattr(task, "prediction_columns", None) or task.label_names)


def probability_columns(task: Any) -> tuple[str, ...]:
    """``p_<label>`` per label when the task has probabilities (classes, multi-label), else none."""
    probe = task.probabilities(_torch().zeros(1, int(task.out_dim)))
    return tuple(f"p_{c}" for c in task.label_names) if probe is not None else ()


def submission_file(task: Any) -> str:
    return str(getattr(task, "submission_file", None) or f"{task.name}_submission.txt")


def submission_columns(task: Any) -> tuple[str, ...]:
    return tuple(getattr(task, "submission_columns", None) or task.label_names)


def integer_values(task: Any) -> bool:
    return bool(getattr(task, "integer_values", False))


def format_value(task: Any, x: float) -> str:
    """One submission / CSV value as the task prints it."""
    return str(int(round(x))) if integer_values(task) else f"{x:.6f}"


def report_columns(task: Any) -> tuple[tuple[str, str], ...]:
    return tuple(getattr(task, "report_columns", None) or ((task.primary_metric, task.name),))


def detail_columns(task: Any) -> tuple[tuple[str, str], ...]:
    return tuple(getattr(task, "detail_columns", None) or report_columns(task))


def table_metrics(task: Any) -> tuple[str, ...]:
    """Every metric the tables show for the task, detail columns first."""
    return tuple(dict.fromkeys(m for m, _ in (*detail_columns(task), *report_columns(task))))


def metric_label(task: Any) -> str:
    return str(getattr(task, "metric_label", None) or task.primary_metric)


def output_kind(task: Any) -> str:
    kind = str(getattr(task, "output_kind", None) or "continuous")
    if kind not in KIND_PLOTS:
        raise ValueError(f"task '{task.name}': output_kind '{kind}' is unknown; accepted: {', '.join(KIND_PLOTS)}")
    return kind


def plots(task: Any) -> tuple[str, ...]:
    kinds = tuple(getattr(task, "plots", None) or (KIND_PLOTS[output_kind(task)],))
    unknown = [k for k in kinds if k not in PLOT_KINDS]
    if unknown:
        raise ValueError(f"task '{task.name}': plot kind '{unknown[0]}' is unknown; accepted: "
                         f"{', '.join(PLOT_KINDS)}")
    return kinds


def scoring(task: Any) -> Any:
    return getattr(task, "scoring", None)


def valid_rows(task: Any, labels: np.ndarray) -> np.ndarray:
    """bool [n]: the label rows [n, label_dim] the task's own rule accepts (every row for a task without one)."""
    own = getattr(task, "valid_rows", None)
    return np.ones(len(labels), bool) if own is None else np.asarray(own(labels), bool)


def reference_names(task: Any) -> dict[str, str]:
    return dict(getattr(task, "reference_names", None) or {})


def metric_names(task: Any) -> tuple[str, ...]:
    """The registered metrics the task reports beside its own: those it declares, then those its config adds."""
    names = [*(getattr(task, "metric_names", None) or ()), *(getattr(task, "extra_metrics", None) or ())]
    return tuple(dict.fromkeys(str(n) for n in names))


def registered_metrics(task: Any, values: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Each of the task's registered metrics on scored rows (values, target [N, label_dim]; one label column is
    passed as [N]): a number under the metric's name, a dict as ``<name>_<key>``."""
    import affbench

    if values.ndim == 2 and values.shape[1] == 1:
        values, target = values[:, 0], target[:, 0]
    out: dict[str, float] = {}
    for name in metric_names(task):
        result = affbench.create("metric", name)(values, target)
        if isinstance(result, dict):
            out.update({f"{name}_{k}": float(v) for k, v in result.items()})
        else:
            out[name] = float(result)
    return out


def check_metric_names(names: Any, where: str) -> tuple[str, ...]:
    """A task option ``metrics``: a list of registered metric names (unknown ones fail, naming the closest)."""
    import affbench

    if names is None:
        return ()
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: metrics must be a list of registered metric names, got {names!r}")
    for name in names:
        affbench.get_registry().get("metric", name)
    return tuple(names)


def submission_values(task: Any, raw: np.ndarray, smoothing: int | None) -> np.ndarray:
    """Submission values [n, label_dim] of one video from its merged raw outputs [n, out_dim]."""
    raw = np.asarray(raw, np.float32)
    own = getattr(task, "submission_values", None)
    if own is not None:
        values = own(raw, int(smoothing or 0))
    else:
        values = task.postprocess(_torch().from_numpy(raw))
    return as_numpy(values).astype(np.float32).reshape(raw.shape[0], -1)


def tune(task: Any, raw: Sequence[np.ndarray], labels: Sequence[np.ndarray], valid: Sequence[np.ndarray],
         smoothing: int | None) -> list[float] | None:
    """The post-processing state the task fits on these (selection split) videos, installed on the task."""
    own = getattr(task, "tune", None)
    if own is None:
        return None
    state = own(list(raw), list(labels), list(valid), int(smoothing or 0))
    return None if state is None else [float(x) for x in np.asarray(state, np.float64).reshape(-1)]


def set_thresholds(task: Any, thresholds: Sequence[float] | None) -> None:
    """Install a tuned post-processing state on the task (ignored for tasks without one)."""
    if thresholds is None or not hasattr(task, "thresholds"):
        return
    torch = _torch()
    current = task.thresholds
    value = torch.as_tensor(np.asarray(thresholds, np.float32))
    if isinstance(current, torch.Tensor):
        with torch.no_grad():
            current.copy_(value.to(current.device))
    else:
        task.thresholds = value


def as_numpy(x: Any) -> np.ndarray:
    torch = _torch()
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _torch():
    import torch

    return torch
