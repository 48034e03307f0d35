"""Metrics are components: a config adds any registered metric to a task, scoring and the report show it."""

from __future__ import annotations

import numpy as np
import pytest

import affbench
from affbench import hookimpl
from affbench.core.registry import UnknownComponentError, reset_registry
from affbench.report import build_tables
from affbench.stages.evaluate import VideoOutputs, score


def max_abs_error():
    """Largest absolute error over every value (a third-party metric)."""
    return lambda pred, target: float(np.max(np.abs(np.asarray(pred) - np.asarray(target))))


def error_quantiles():
    """Median and 90th percentile of the absolute error: a metric with several values."""
    def fn(pred, target):
        err = np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))
        return {"median": float(np.median(err)), "p90": float(np.quantile(err, 0.9))}
    return fn


class ErrorMetrics:
    @hookimpl
    def affbench_register_metrics(self, register):
        register("max_abs_error", max_abs_error)
        register("error_quantiles", error_quantiles)


@pytest.fixture
def third_party_metrics():
    reset_registry()
    affbench.get_registry().register_plugin(ErrorMetrics(), "error-metrics")
    yield
    reset_registry()


def _outputs(rng):
    outputs = VideoOutputs()
    for video, n in (("a", 40), ("b", 25)):
        outputs.outputs[video] = rng.normal(size=(n, 2)).astype(np.float32)
        outputs.labels[video] = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
        outputs.valid[video] = rng.random(n) < 0.8
        outputs.has_face[video] = np.ones(n, bool)
    return outputs


def test_a_config_adds_registered_metrics_to_a_task_and_they_score_the_same_frames(third_party_metrics):
    rng = np.random.default_rng(0)
    outputs = _outputs(rng)
    task = affbench.create("task", "va", metrics=["max_abs_error", "error_quantiles"])
    metrics, values = score(task, outputs)
    pred = np.concatenate([values[v][outputs.valid[v]] for v in outputs.videos])
    true = np.concatenate([outputs.labels[v][outputs.valid[v]] for v in outputs.videos])
    err = np.abs(pred.astype(np.float64) - true)
    assert metrics["max_abs_error"] == pytest.approx(err.max())
    assert metrics["error_quantiles_median"] == pytest.approx(np.median(err))
    assert metrics["error_quantiles_p90"] == pytest.approx(np.quantile(err, 0.9))
    plain, _ = score(affbench.create("task", "va"), outputs)
    assert {k: metrics[k] for k in plain} == plain  # the task's own metrics are unchanged


def test_an_unknown_metric_is_refused_naming_the_registered_ones(third_party_metrics):
    with pytest.raises(UnknownComponentError, match="unknown metric 'max_abs_eror'.*Did you mean 'max_abs_error'"):
        affbench.create("task", "expr", metrics=["max_abs_eror"])


def test_the_report_gains_a_column_per_added_metric(third_party_metrics):
    config = {"task": {"name": "va", "options": {"metrics": ["max_abs_error"]}}}
    runs = [{"name": row, "task": "va", "fold": 0, "run_dir": None, "config": config,
             "metrics": {"valence": 0.3, "arousal": 0.2, "mean": 0.25, "max_abs_error": err}}
            for row, err in (("ours", 0.9), ("baseline", 1.4))]
    tables = build_tables(runs)
    assert tables["table2"]["header"] == ["Method", "VA", "va max_abs_error"]
    cells = {row["row"]: row["cells"] for row in tables["table2"]["rows"]}
    assert cells["ours"][2].startswith("0.900") and cells["baseline"][2].startswith("1.400")
