"""Every number of a suite report, with its 95 % cluster-bootstrap interval.

* **Runs.** Each (row, task, fold, seed) run is rescored from its scored frames (``affbench.frame_stats``): the
  point value is the task's metric on all scored frames; its interval comes from resampling the fold's
  validation videos (``affbench.bootstrap``). A run without predictions keeps its metrics.json value and has
  no interval. A run's frames count as its ``eval.scoring`` says (every frame once, or as often as full windows
  hold them: ``affbench.scoring_rule``), so the rescored value equals its metrics.json value either way; a row
  scored on windows is marked ``‡``.
* **Draws.** One set of draws per (task, fold), seeded by (bootstrap seed, task, fold) and shared by every row,
  seed and reference of that fold: differences and means line up draw by draw.
* **Cells.** A table cell holding several runs (folds x seeds) shows their mean, the population std over
  them and n; its interval is the percentile interval of the mean over the runs, draw by draw (every run
  resampled with its fold's draws). It covers the resampling of validation videos with the trained models
  held fixed; the std shows the spread between runs.
* **References.** Label-only predictors (``affbench.references``) on each fold's scored frames (counted by the
  scoring rule of the first run of the fold that has its frames).
* **Differences.** Each row minus the main row, run by run paired on the same fold (and the same seed position),
  scored on the frames both runs scored and on the same draws; a cell's difference is the mean over the pairs.
  Each run counts those frames by its own scoring rule, as its cell does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affbench import task_contract as contract
from affbench.bootstrap import (
    DEFAULT_DRAWS,
    DEFAULT_SEED,
    LEVEL,
    ClusterDraws,
    Estimate,
    difference,
    estimate,
    mean_of,
)
from affbench.frame_stats import RunFrames, common_frames, read_run_frames, task_scoring
from affbench.references import Reference, reference_title, references_for, training_label_stats
from affbench.scoring_rule import WINDOWS, ScoringRule

SELECT_MODES = ("inner", "last", "validation")
# A run whose config has no train.select chose its checkpoint on the validation frames it reports.
SELECT_DEFAULT = "validation"
ALL = "all"  # the fold key of a cell over every fold (and seed)
# A metrics.json value this far from the rescored one is reported in the notes.
RESCORE_TOLERANCE = 1e-4


def task_metrics(task: str) -> tuple[str, ...]:
    """The metrics the tables show for `task`: its detail and report columns (affbench.task_contract)."""
    return contract.table_metrics(contract.task_named(task))


def added_metrics(run: Mapping[str, Any]) -> tuple[str, ...]:
    """The metrics.json keys of the registered metrics a run's config added to its task (the task option
    ``metrics``): a metric's own name, or ``<name>_<key>`` for one that returns several values."""
    spec = (run.get("config") or {}).get("task")
    names = ((spec.get("options") or {}).get("metrics") or []) if isinstance(spec, Mapping) else []
    recorded = run.get("metrics") or {}
    return tuple(k for name in names for k in recorded if k == name or k.startswith(f"{name}_"))


def tasks_of(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The tasks of these runs, in the order they first appear (the suite's order)."""
    return list(dict.fromkeys(run["task"] for run in runs))


@dataclass(frozen=True)
class BootstrapSettings:
    """How many draws and which seed the report's cluster bootstrap uses."""

    draws: int = DEFAULT_DRAWS
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        for key in ("draws", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "draws" else 0):
                raise ValueError(f"bootstrap.{key}: expected an integer >= {1 if key == 'draws' else 0}, "
                                 f"got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"draws": self.draws, "seed": self.seed, "level": LEVEL, "interval": "percentile",
                "unit": "source video (<name>_left/_right together)"}


def selection_mode(run: Mapping[str, Any]) -> str:
    """``train.select`` of a run's resolved config (inner | last | validation); missing means validation."""
    train = ((run.get("config") or {}).get("train") or {})
    return str(train.get("select") or SELECT_DEFAULT)


def scoring_rule(run: Mapping[str, Any]) -> ScoringRule:
    """``eval.scoring`` of a run's resolved config (with its windows); missing means every frame once."""
    return ScoringRule.of(run.get("config"))


@dataclass
class RunScores:
    """One run's table metrics: rescored estimates when its frames are there, else metrics.json values."""

    run: Mapping[str, Any]
    frames: RunFrames | None
    values: dict[str, float]
    estimates: dict[str, Estimate] = field(default_factory=dict)

    @property
    def row(self) -> str:
        return self.run["name"]

    @property
    def task(self) -> str:
        return self.run["task"]

    @property
    def fold(self) -> int | None:
        return self.run["fold"]

    @property
    def seed(self) -> int | None:
        return self.run.get("seed")


@dataclass
class Cell:
    """Several runs' values of one metric: mean, population std, n and (when every run has one) the interval."""

    values: list[float]
    estimate: Estimate | None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values))

    def to_dict(self) -> dict[str, Any]:
        low, high = self.estimate.interval if self.estimate is not None else (None, None)
        return {"mean": self.mean, "std": self.std, "n": self.n, "low": low, "high": high}


def _fold_key(fold: int | None) -> str:
    return "official" if fold is None else f"fold{fold}"


def _sort_fold(fold: int | None) -> int:
    return -1 if fold is None else fold


class ReportNumbers:
    """Every value, interval, reference and paired difference of a set of runs."""

    def __init__(self, runs: Sequence[Mapping[str, Any]], *, main: str | None,
                 settings: BootstrapSettings | None = None) -> None:
        self.settings = settings or BootstrapSettings()
        self.main = main
        self.notes: list[str] = []
        self.scores = [self._scores(run) for run in runs]
        self.draws: dict[tuple[str, int | None], ClusterDraws] = {}
        for (task, fold), group in self._groups(s for s in self.scores if s.frames is not None).items():
            videos = {v for s in group for v in s.frames.scored}
            self.draws[(task, fold)] = ClusterDraws.for_videos(videos, draws=self.settings.draws,
                                                               seed=self.settings.seed,
                                                               key=f"{task}/{_fold_key(fold)}")
            for s in group:
                self._bootstrap(s)
        self.references = self._references()
        self._differences: dict[tuple[str, str, str, Any], tuple[Estimate, int] | None] = {}

    # -- building ------------------------------------------------------------------------------------------

    def _scores(self, run: Mapping[str, Any]) -> RunScores:
        metrics = run.get("metrics") or {}
        shown = (*task_metrics(run["task"]), *added_metrics(run))
        values = {m: float(metrics[m]) for m in shown if m in metrics}
        return RunScores(run, read_run_frames(run.get("run_dir"), run["task"], scoring_rule(run)), values)

    @staticmethod
    def _groups(scores: Iterable[RunScores]) -> dict[tuple[str, int | None], list[RunScores]]:
        groups: dict[tuple[str, int | None], list[RunScores]] = {}
        for s in scores:
            groups.setdefault((s.task, s.fold), []).append(s)
        return groups

    def _bootstrap(self, s: RunScores) -> None:
        draws = self.draws[(s.task, s.fold)]
        stats = s.frames.video_stats()
        for metric, score in task_scoring(s.task).scores.items():
            s.estimates[metric] = estimate(draws, stats, score)
            recorded = s.values.get(metric)
            if recorded is not None and abs(recorded - s.estimates[metric].value) > RESCORE_TOLERANCE:
                self.notes.append(f"{s.task}/{s.row} {_fold_key(s.fold)} seed {s.seed}: {metric} rescored from its "
                                  f"predictions is {s.estimates[metric].value:.4f}, metrics.json says {recorded:.4f} "
                                  f"(the tables show the rescored value)")
            s.values[metric] = s.estimates[metric].value

    def _references(self) -> dict[tuple[str, int | None], list[tuple[Reference, dict[str, Estimate]]]]:
        out = {}
        for (task, fold), draws in sorted(self.draws.items(), key=lambda kv: (kv[0][0], _sort_fold(kv[0][1]))):
            source = next(s for s in self.scores if (s.task, s.fold) == (task, fold) and s.frames is not None)
            label_stats = training_label_stats(source.run.get("run_dir"))
            if label_stats is None:
                self.notes.append(f"{task} {_fold_key(fold)}: no training label statistics (the training window "
                                  f"shards' manifest is gone), so no reference rows")
                continue
            refs = references_for(source.frames, label_stats)
            out[(task, fold)] = [(ref, {m: estimate(draws, ref.video_stats, score)
                                        for m, score in task_scoring(task).scores.items()}) for ref in refs]
        return out

    # -- queries -------------------------------------------------------------------------------------------

    def rows(self) -> list[str]:
        """Row names in the order they first appear."""
        return list(dict.fromkeys(s.row for s in self.scores))

    def folds(self) -> list[int | None]:
        return sorted({s.fold for s in self.scores}, key=_sort_fold)

    def row_selection(self, row: str) -> list[str]:
        """The distinct selection modes of a row's runs."""
        return sorted({selection_mode(s.run) for s in self.scores if s.row == row})

    def row_scoring(self, row: str) -> list[str]:
        """The distinct scoring rules (``eval.scoring``) of a row's runs."""
        return sorted({scoring_rule(s.run).rule for s in self.scores if s.row == row})

    def on_windows(self) -> bool:
        """Whether any run is scored on windows (the tables then explain the mark)."""
        return any(scoring_rule(s.run).on_windows for s in self.scores)

    def runs_of(self, row: str, task: str, fold: int | None | str = ALL) -> list[RunScores]:
        return sorted((s for s in self.scores if s.row == row and s.task == task and (fold == ALL or s.fold == fold)),
                      key=lambda s: (_sort_fold(s.fold), s.seed if s.seed is not None else -1))

    def cell(self, row: str, task: str, metric: str, fold: int | None | str = ALL) -> Cell | None:
        runs = [s for s in self.runs_of(row, task, fold) if metric in s.values]
        if not runs:
            return None
        with_interval = [s.estimates[metric] for s in runs if metric in s.estimates]
        return Cell([s.values[metric] for s in runs],
                    mean_of(with_interval) if len(with_interval) == len(runs) else None)

    def reference_cell(self, name: str, task: str, metric: str, fold: int | None | str = ALL) -> Cell | None:
        found = [est[metric] for (t, f), refs in self.references.items() if t == task and (fold == ALL or f == fold)
                 for ref, est in refs if ref.name == name]
        return Cell([e.value for e in found], mean_of(found)) if found else None

    def pairs(self, row: str, task: str) -> list[tuple[RunScores, RunScores]]:
        """(row run, main run) pairs with frames: the same fold, seeds matched in sorted order."""
        if self.main is None or row == self.main:
            return []
        out = []
        for fold in self.folds():
            mine = [s for s in self.runs_of(row, task, fold) if s.frames is not None]
            main = [s for s in self.runs_of(self.main, task, fold) if s.frames is not None]
            out += list(zip(mine, main, strict=False))
        return out

    def difference(self, row: str, task: str, metric: str, fold: int | None | str = ALL) -> tuple[Estimate, int] | None:
        """(row - main on the same draws, averaged over the run pairs; number of pairs), or None."""
        key = (row, task, metric, fold)
        if key not in self._differences:
            self._differences[key] = self._difference(row, task, metric, fold)
        return self._differences[key]

    def _difference(self, row: str, task: str, metric: str, fold: int | None | str) -> tuple[Estimate, int] | None:
        diffs = []
        for a, b in self.pairs(row, task):
            if fold != ALL and a.fold != fold:
                continue
            keep = common_frames(a.frames, b.frames)
            draws = self.draws[(task, a.fold)]
            score = task_scoring(task).scores.get(metric)
            if score is None:  # a metric without per-video statistics has no paired difference
                return None
            diffs.append(difference(estimate(draws, a.frames.video_stats(keep), score),
                                    estimate(draws, b.frames.video_stats(keep), score)))
        return (mean_of(diffs), len(diffs)) if diffs else None

    # -- report.json ---------------------------------------------------------------------------------------

    def values_json(self) -> list[dict[str, Any]]:
        """One entry per (row, task, fold, seed, metric) with its interval bounds."""
        out = []
        for s in self.scores:
            frames = s.frames
            for metric, value in s.values.items():
                est = s.estimates.get(metric)
                out.append({
                    "row": s.row, "task": s.task, "fold": s.fold, "seed": s.seed, "metric": metric,
                    "value": value, "low": est.low if est else None, "high": est.high if est else None,
                    "metrics_json": (s.run.get("metrics") or {}).get(metric),
                    "frames": frames.n_scored() if frames else None,
                    "videos": len(frames.scored) if frames else None,
                    "clusters": len(self.draws[(s.task, s.fold)].clusters) if frames else None,
                    "select": selection_mode(s.run), "scoring": scoring_rule(s.run).to_dict(),
                    "run_dir": s.run.get("run_dir"),
                })
        return out

    def references_json(self) -> list[dict[str, Any]]:
        out = []
        for (task, fold), refs in self.references.items():
            for ref, estimates in refs:
                for metric, est in estimates.items():
                    out.append({"reference": ref.name, "title": reference_title(task, ref.name), "task": task,
                                "fold": fold, "metric": metric, "value": est.value, "low": est.low,
                                "high": est.high, **ref.detail})
        return out

    def differences_json(self) -> list[dict[str, Any]]:
        """Every row's paired difference from the main row: per fold and over all folds and seeds."""
        out = []
        for row in self.rows():
            for task in tasks_of(s.run for s in self.scores):
                for metric in task_metrics(task):
                    for fold in [*self.folds(), ALL]:
                        found = self.difference(row, task, metric, fold)
                        if found is None:
                            continue
                        est, pairs = found
                        out.append({"row": row, "main": self.main, "task": task, "metric": metric, "fold": fold,
                                    "pairs": pairs, "difference": est.value, "low": est.low, "high": est.high,
                                    "excludes_zero": est.excludes_zero})
        return out


SELECTED_ON_REPORTED = "†"  # the row's checkpoint was chosen on the frames the table scores
SCORED_ON_WINDOWS = "‡"  # the row's metrics count the frames of full windows (eval.scoring: windows)


def row_label(numbers: ReportNumbers, row: str) -> str:
    """The row's name, marked when any of its runs was selected on the reported frames, and when any was
    scored on windows rather than on every frame once."""
    marks = [SELECTED_ON_REPORTED] * ("validation" in numbers.row_selection(row))
    marks += [SCORED_ON_WINDOWS] * (WINDOWS in numbers.row_scoring(row))
    return " ".join([row, *marks])


def table_columns(runs: Sequence[Mapping[str, Any]], which: str) -> list[tuple[str, str, str]]:
    """(task, metric key in metrics.json, column title) of Table 1 (``detail``) or Table 2 (``report``): each
    task's declared columns, tasks in the order the runs list them."""
    columns = contract.detail_columns if which == "detail" else contract.report_columns
    out = []
    for task in tasks_of(runs):
        out += [(task, metric, title) for metric, title in columns(contract.task_named(task))]
        if which == "report":  # Table 2 also shows the metrics configs added to the task
            added = dict.fromkeys(k for run in runs if run["task"] == task for k in added_metrics(run))
            out += [(task, key, f"{task} {key}") for key in added if key not in contract.table_metrics(
                contract.task_named(task))]
    return out
