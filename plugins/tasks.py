"""Built-in tasks: ``va``, ``expr``, ``au`` (the three ABAW challenges), and ``multitask``, which joins tasks
in one model.

Every task takes ``metrics: [names]``, registered metrics to report beside its own (affbench.task_contract).
Registration only; the implementations (affbench_plugins.affect_tasks) import torch when a task is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from affbench import hookimpl


def va(*, output: str = "tanh", loss_reduction: str = "mean", loss_statistics: str = "population",
       eps: float = 1e-8, metrics: Sequence[str] | None = None):
    """Valence-arousal regression: 2 outputs in [-1, 1], loss 1 - CCC, score mean CCC."""
    from affbench_plugins.affect_tasks import VATask

    return VATask(output=output, loss_reduction=loss_reduction, loss_statistics=loss_statistics, eps=eps,
                  metrics=metrics)


va.test_options = {"loss_reduction": "sum", "loss_statistics": "sample"}


def expr(*, label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None,
         metrics: Sequence[str] | None = None):
    """Expression classification: 8 classes, cross-entropy, score macro F1."""
    from affbench_plugins.affect_tasks import ExprTask

    return ExprTask(label_smoothing=label_smoothing, class_weights=class_weights, metrics=metrics)


expr.test_options = {"label_smoothing": 0.1}


def au(*, pos_weight: Sequence[float] | None = None, threshold: float | Sequence[float] = 0.5,
       metrics: Sequence[str] | None = None):
    """Action-unit detection: 12 AUs, BCE-with-logits, score mean F1 at per-AU thresholds."""
    from affbench_plugins.affect_tasks import AUTask

    return AUTask(pos_weight=pos_weight, threshold=threshold, metrics=metrics)


au.test_options = {"pos_weight": [2.0] * 12}


def multitask(*, tasks: Sequence[Any]):
    """Several registered tasks learnt by one model, one head each: ``tasks: [{name, weight, options}, ...]``,
    masked losses weighted and summed, each task scored on its own frames, score = the sum of their primaries."""
    from affbench.multitask import MultiTask

    return MultiTask(tasks)


def _check_multitask_option(path: str, value: Any) -> None:
    """The task list checked when a config loads, so a bad entry is reported at its file and line."""
    if path.rsplit(".", 1)[-1] == "tasks":
        from affbench.multitask import part_specs

        part_specs(value, where=path)


multitask.test_options = {"tasks": [{"name": "va", "weight": 1.0}, {"name": "expr", "weight": 0.5}]}
multitask.check_option = _check_multitask_option


@hookimpl
def affbench_register_tasks(register):
    register("va", va)
    register("expr", expr)
    register("au", au)
    register("multitask", multitask)
