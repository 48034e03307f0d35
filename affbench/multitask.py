"""The multi-task model's task: several registered tasks learnt at once by one temporal stack with one head each.

A config names it as its task and lists the tasks it joins with their loss weights::

    task:
      name: multitask
      options:
        tasks: [{name: va, weight: 1}, {name: expr, weight: 1}, {name: au, weight: 1, options: {}}]

It speaks the task contract (affbench.task_contract) on the merged label layout of
:class:`affbench.stages.multitask_labels.MultiTaskLabels` (every part's label columns, then one usability flag
per part), so stage 3 trains and scores it like any task:

* the loss is the weighted sum of each part's own loss on the frames where that part's label is usable: a
  frame whose video lacks a part's labels carries no loss for it;
* post-processing, threshold tuning and metrics run per part on that part's own columns; a part is scored on
  exactly the frames its label is usable on, which are the frames a single-task run of it scores;
* the primary metric ``score`` is the sum of the parts' primary metrics (the ABAW multi-task score for VA,
  EXPR and AU), which ``train.select`` picks the epoch by. Part metrics are named ``<part>/<metric>``.

The training mix is the union of the parts' training videos. So that batches do not starve the part with the
fewest videos, each training video is repeated in the epoch (:func:`epoch_repeats`, the README's sampling rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from affbench import task_contract as contract
from affbench.core.config import component_spec
from affbench.stages.multitask_labels import MultiTaskLabels

NAME = "multitask"
SCORE = "score"
PART_KEYS = ("name", "options", "weight")


def part_specs(tasks: Any, where: str = "task.options.tasks") -> list[dict[str, Any]]:
    """The option ``tasks`` as [{name, options, weight}], checked (a name alone means weight 1, no options);
    errors name the option as `where`."""
    if not isinstance(tasks, Sequence) or isinstance(tasks, str) or len(tasks) < 2:
        raise ValueError(f"{where}: a list of at least two tasks ({{name, weight, options}}), got {tasks!r}")
    specs = []
    for i, item in enumerate(tasks):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"{where}[{i}]: expected a task name or {{name, weight, options}}, got {item!r}")
        extra = sorted(set(item) - set(PART_KEYS))
        if extra:
            raise ValueError(f"{where}[{i}]: unknown key '{extra[0]}'; accepted: {', '.join(PART_KEYS)}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"{where}[{i}].weight: a loss weight > 0, got {weight!r}")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"{where}[{i}].options: expected a mapping, got {options!r}")
        if item["name"] == NAME:
            raise ValueError(f"{where}[{i}]: a multi-task model cannot join another '{NAME}'")
        specs.append({"name": item["name"], "options": dict(options), "weight": float(weight)})
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: each task may be listed once, got {', '.join(names)}")
    return specs


class MultiTask(nn.Module):
    """Several tasks on one merged label layout; see the module docstring."""

    name = NAME
    primary_metric = SCORE

    def __init__(self, tasks: Sequence[Any]) -> None:
        import affbench

        super().__init__()
        self.specs = part_specs(tasks)
        self.part_names = tuple(s["name"] for s in self.specs)
        self.parts = nn.ModuleList([affbench.create("task", s["name"], **s["options"]) for s in self.specs])
        self.layout = MultiTaskLabels(list(self.parts), [s["weight"] for s in self.specs])
        self.out_dim = self.layout.out_dim
        self.label_dim = self.layout.width
        self.label_names = (*(f"{n}/{c}" for n, p in self.named_parts() for c in p.label_names),
                            *(f"{n}/usable" for n in self.part_names))

    def named_parts(self) -> list[tuple[str, nn.Module]]:
        return list(zip(self.part_names, self.parts, strict=True))

    def loss(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.layout.loss(pred, target, valid)

    def probabilities(self, pred: Any) -> None:
        return None  # each part writes its own (see affbench.stages.evaluate.write_run_predictions)

    def postprocess(self, pred: Any) -> torch.Tensor:
        pred = torch.as_tensor(pred)
        return torch.cat([torch.as_tensor(p.postprocess(pred[..., self.layout.out_slices[i]])).float()
                          .reshape(*pred.shape[:-1], -1) for i, p in enumerate(self.parts)], dim=-1)

    def submission_values(self, raw: np.ndarray, smoothing: int) -> np.ndarray:
        """Every part's values side by side ([n, sum of label_dims]), each its own post-processing."""
        return np.concatenate([self.part_values(i, raw, smoothing) for i in range(len(self.parts))], axis=1)

    def part_values(self, i: int, raw: np.ndarray, smoothing: int) -> np.ndarray:
        return contract.submission_values(self.parts[i], np.asarray(raw)[:, self.layout.out_slices[i]], smoothing)

    def tune(self, raw: Sequence[np.ndarray], labels: Sequence[np.ndarray], valid: Sequence[np.ndarray],
             smoothing: int) -> list[float] | None:
        """Each part's own tuning on the frames its label is usable on; the states side by side."""
        states: list[float] = []
        for i, part in self.tunable():
            out, cols = self.layout.out_slices[i], self.layout.label_slices[i]
            state = contract.tune(part, [r[:, out] for r in raw], [lab[:, cols] for lab in labels],
                                  [np.asarray(v, bool) & self.layout.usable(lab, i) for v, lab in zip(valid, labels,
                                                                                                      strict=True)],
                                  smoothing)
            if state is None:
                return None
            states += state
        return states or None

    def tunable(self) -> list[tuple[int, nn.Module]]:
        """The parts that keep a tuned post-processing state (``thresholds``)."""
        return [(i, p) for i, p in enumerate(self.parts) if hasattr(p, "thresholds")]

    @property
    def thresholds(self) -> np.ndarray:
        """The tunable parts' states side by side (how a checkpoint stores them). An array, not a tensor: setting
        it (affbench.task_contract.set_thresholds) goes through the setter, which hands each part its own."""
        return np.concatenate([np.asarray(contract.as_numpy(p.thresholds), np.float32).reshape(-1)
                               for _, p in self.tunable()] or [np.zeros(0, np.float32)])

    @thresholds.setter
    def thresholds(self, value: Any) -> None:
        flat = np.asarray(contract.as_numpy(value), np.float32).reshape(-1)
        start = 0
        for _, part in self.tunable():
            n = int(np.asarray(contract.as_numpy(part.thresholds)).size)
            contract.set_thresholds(part, flat[start:start + n])
            start += n

    def metrics(self, values: Any, target: Any, valid: Any = None) -> dict[str, float]:
        """``<part>/<metric>`` of each part on the rows its label is usable on, and ``score``, the sum of the
        parts' primary metrics (over the parts the rows label)."""
        values, target = np.asarray(values), np.asarray(target)
        out: dict[str, float] = {}
        score = 0.0
        for i, (name, part) in enumerate(self.named_parts()):
            rows = self.layout.usable(target, i)
            if valid is not None:
                rows &= np.asarray(valid, bool)
            if not rows.any():
                continue
            got = part_metrics(part, values[rows][:, self.layout.label_slices[i]],
                               target[rows][:, self.layout.label_slices[i]])
            out.update({f"{name}/{k}": v for k, v in got.items()})
            out[f"{name}/frames"] = int(rows.sum())
            score += got[part.primary_metric]
        out[SCORE] = score
        return out


def part_metrics(part: Any, values: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """A part's own metrics and its registered ones on its scored rows, as a single-task run reports them."""
    metrics = {k: float(v) for k, v in part.metrics(values, target).items()}
    metrics.update(contract.registered_metrics(part, values, target))
    return metrics


def is_multitask(task: Any) -> bool:
    return isinstance(task, MultiTask)


def split_metrics(metrics: Mapping[str, Any], part: str) -> dict[str, Any]:
    """One part's metrics out of a multi-task run's (``va/mean`` -> ``mean``)."""
    prefix = f"{part}/"
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}


def epoch_repeats(layout: MultiTaskLabels, records: Sequence[Any]) -> dict[str, int]:
    """How many times each training video's windows go into one epoch, so no task starves.

    The rule: with n_t the number of training videos labelled for task t and n_max the largest n_t, task t's
    repeat is r_t = round(n_max / n_t) (at least 1), and a video takes the largest r_t of the tasks it is labelled
    for. Every task then fills at least two thirds as many video slots per epoch as the task with the most
    videos, and a video of a task with as many videos as the largest is seen once.
    """
    labelled = {r.video: [i for i in range(len(layout.tasks)) if layout.usable(r.labels, i).any()] for r in records}
    counts = [sum(i in tasks for tasks in labelled.values()) for i in range(len(layout.tasks))]
    n_max = max(counts) if counts else 0
    repeat = [max(1, round(n_max / n)) if n else 1 for n in counts]
    return {video: max((repeat[i] for i in tasks), default=1) for video, tasks in labelled.items()}


def joined_tasks(config: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The part specs when the config's task is a multi-task model, else None."""
    spec = component_spec(config["task"], "task", kind="task")
    return part_specs(spec["options"].get("tasks")) if spec["name"] == NAME else None


def training_repeats(config: Mapping[str, Any], records: Sequence[Any]) -> dict[str, int] | None:
    """The copies per epoch of each training video of a multi-task model (:func:`epoch_repeats`); None for a
    single task, or when every video is seen once."""
    specs = joined_tasks(config)
    if specs is None:
        return None
    repeats = epoch_repeats(MultiTask([dict(s) for s in specs]).layout, records)
    return repeats if any(r > 1 for r in repeats.values()) else None


def per_task_runs(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The suite's run records as the report reads them: a multi-task run becomes one record per task it joins
    (that task's metrics, the run folder's ``<task>/`` with its predictions), so its row sits under each task
    beside the single-task rows; ``multitask`` holds the run's own score."""
    out: list[dict[str, Any]] = []
    for run in runs:
        specs = joined_tasks(run["config"]) if run.get("config") and run.get("task") == NAME else None
        if specs is None:
            out.append(dict(run))
            continue
        metrics = run.get("metrics") or {}
        out += [{**run, "task": spec["name"], "metrics": split_metrics(metrics, spec["name"]),
                 "run_dir": str(Path(run["run_dir"]) / spec["name"]) if run.get("run_dir") else None,
                 "multitask": {"tasks": [s["name"] for s in specs], SCORE: metrics.get(SCORE)}}
                for spec in specs]
    return out
