"""PNG plots of a suite (matplotlib, Agg backend: no display needed), each answering one question.

Each task declares the plots that suit it (``plots`` in affbench.task_contract); the built-in ones:

* ``<task>_traces.png`` (continuous outputs, e.g. VA): how do the predictions follow the labels? Predicted vs
  true values of the longest validation videos, for the main row and the best other row, each panel titled
  with the video's CCC of both; frames without a face are shaded;
* ``<task>_confusion.png`` (classes, e.g. EXPR): which classes are confused? The main row's confusion matrix,
  each row normalised by its true class (the colour bar says so), the frame counts printed; a class without
  frames is labelled;
* ``<task>_f1.png`` (multi-label, e.g. AU): which labels are learnt? Per-label F1 of every row (a bar at 0 is
  marked, so it never looks missing) against the all-labels-on reference 2p / (1 + p) of each label;
* ``training_curves.png``: did training converge, and which epoch was kept? Training loss and the selecting
  split's score per epoch, the selected epoch marked, and the validation score reported for it apart;
* ``intervals.png``: do rows differ? One panel per task, every row's value with its 95 % interval, the
  references as vertical lines (the numbers of Table 2).

Predictions and true labels come from each run's ``predictions.validation.csv`` (older runs: labels from the
validation window shards recorded in its ``data_provenance.json``), so no dataset has to be reopened. A plot
whose inputs are missing is left out rather than failing the report.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affbench import metrics as abaw
from affbench import task_contract as contract
from affbench.frame_stats import read_predictions, read_run_frames, validation_labels
from affbench.report_numbers import tasks_of

log = logging.getLogger("affbench.plots")

TRACE_VIDEOS = 3
DPI = 90


def _primary(task: str) -> tuple[str, str]:
    """The score a task's runs are selected on, as metrics.json / metrics.csv name it, and its axis label."""
    spec = contract.task_named(task)
    return spec.primary_metric, contract.metric_label(spec)
SELECTION_SPLITS = {"inner": ("selection_", "selection split (held-out training videos)"),
                    "validation": ("val_", "validation (the reported frames)")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def _first_run(runs: Sequence[Mapping[str, Any]], name: str | None, task: str) -> Mapping[str, Any] | None:
    candidates = [r for r in runs if r["task"] == task and (name is None or r["name"] == name) and r.get("run_dir")]
    candidates.sort(key=lambda r: (-1 if r["fold"] is None else r["fold"], r.get("seed") or 0))
    return candidates[0] if candidates else None


def _best_other_run(runs: Sequence[Mapping[str, Any]], main: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The other row's run on the main run's fold and seed with the best primary validation score."""
    key = _primary(main["task"])[0]
    others = [r for r in runs if r["task"] == main["task"] and r["name"] != main["name"] and r.get("run_dir")
              and r["fold"] == main["fold"] and r.get("seed") == main.get("seed")
              and isinstance((r.get("metrics") or {}).get(key), (int, float))]
    return max(others, key=lambda r: r["metrics"][key], default=None)


def _spans(flags: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] 1-based frame spans where `flags` is True."""
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a) + 1, int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _video_ccc(pred: np.ndarray, true: np.ndarray, scored: np.ndarray) -> float | None:
    return abaw.ccc(pred[scored], true[scored]) if scored.any() else None


def plot_traces(run: Mapping[str, Any], path: Path, *, compare: Mapping[str, Any] | None = None,
                videos: int = TRACE_VIDEOS) -> Path | None:
    """Predicted vs true values of the longest validation videos of one run of a continuous task (and of
    `compare`, another row's run on the same fold), each panel titled with the video's CCC of each row."""
    task = contract.task_named(run["task"])
    frames = read_run_frames(run["run_dir"], run["task"])
    if frames is None:
        return None
    dims = contract.prediction_columns(task)
    low, high = getattr(task, "value_range", None) or (None, None)
    shown_runs = [(run, frames)]
    if compare is not None and (other := read_run_frames(compare["run_dir"], run["task"])) is not None:
        shown_runs.append((compare, other))
    faces = {v: cols.get("face") for v, cols in read_predictions(run["run_dir"]).items()}
    shown = sorted(frames.true, key=lambda v: -len(frames.true[v]))[:videos]
    if not shown:
        return None
    plt = _pyplot()
    colours = ("tab:red", "tab:blue")
    fig, axes = plt.subplots(len(shown), len(dims), figsize=(6 * len(dims), 2.8 * len(shown)), squeeze=False)
    for row, video in enumerate(shown):
        true, scored = frames.true[video], frames.scored[video]
        x = np.arange(1, len(true) + 1)
        face = faces.get(video)
        for col, dim in enumerate(dims):
            ax = axes[row][col]
            if face is not None:
                for i, (a, b) in enumerate(_spans(face == 0)):
                    ax.axvspan(a - 0.5, b + 0.5, color="0.85", linewidth=0, label="no face" if i == 0 else None)
            ax.plot(x, np.where(scored, true[:, col], np.nan), color="black", linewidth=1.4, label="true")
            parts = []
            for (r, f), colour in zip(shown_runs, colours, strict=False):
                if video not in f.pred or len(f.pred[video]) != len(true):
                    continue
                ax.plot(x, f.pred[video][:, col], color=colour, linewidth=1.0, label=r["name"])
                value = _video_ccc(f.pred[video][:, col], true[:, col], f.scored[video])
                parts.append(f"{r['name']} {'—' if value is None else f'{value:.2f}'}")
            if low is not None:
                margin = 0.025 * (high - low)
                ax.set_ylim(low - margin, high + margin)
            ax.set_title(f"{video}: {dim}  (CCC {', '.join(parts)})", fontsize=9)
            ax.set_xlabel("frame")
            ax.set_ylabel(dim)
            if row == 0 and col == 0:
                ax.legend(loc="upper right", fontsize=7, ncol=2)
    versus = f" vs {compare['name']} (best other row)" if len(shown_runs) > 1 else ""
    fig.suptitle(f"{run['name']}{versus}, fold {run['fold']}: validation traces; shaded frames have no face")
    fig.tight_layout()
    return _save(fig, path)


def confusion(run: Mapping[str, Any]) -> np.ndarray | None:
    """int [K, K] confusion matrix (rows true, columns predicted) over valid frames of one run of a class task."""
    task = contract.task_named(run["task"])
    classes, (column,) = task.label_names, contract.prediction_columns(task)
    preds = read_predictions(run["run_dir"])
    labels = validation_labels(run["run_dir"])
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    found = False
    for video, cols in preds.items():
        if video not in labels:
            continue
        true, valid = labels[video]
        pred = cols[column].astype(np.int64)
        keep = valid & (true[:, 0] >= 0)
        np.add.at(matrix, (true[keep, 0].astype(np.int64), pred[keep]), 1)
        found = found or bool(keep.any())
    return matrix if found else None


def plot_confusion(run: Mapping[str, Any], path: Path) -> Path | None:
    """The confusion matrix of one run of a class task, normalised per true class."""
    matrix = confusion(run)
    if matrix is None:
        return None
    classes = contract.task_named(run["task"]).label_names
    plt = _pyplot()
    totals = matrix.sum(axis=1)
    norm = matrix / np.maximum(totals[:, None], 1)
    fig, ax = plt.subplots(figsize=(7.6, 5.8), layout="constrained")  # room for the long class labels
    image = ax.imshow(np.where(totals[:, None] > 0, norm, np.nan), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)),
                  [f"{c} (n={n})" if n else f"{c} (no frames)" for c, n in zip(classes, totals, strict=True)])
    for i in range(len(classes)):
        if totals[i] == 0:
            ax.text((len(classes) - 1) / 2, i, "no frames of this class in the validation split", ha="center", va="center",
                    fontsize=8, color="0.3", style="italic")
            continue
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (frames)")
    ax.set_title(f"{run['name']} fold {run['fold']}: {run['task']} confusion (frame counts)")
    bar = fig.colorbar(image, ax=ax, fraction=0.046)
    bar.set_label("fraction of true class")
    return _save(fig, path)


def all_on_reference(runs: Sequence[Mapping[str, Any]], task: str) -> np.ndarray | None:
    """[K] the all-labels-on F1 per label (2p / (1 + p)), mean over the folds of the task's runs' scored frames."""
    from affbench.references import all_labels_on_f1

    per_fold = {}
    for run in runs:
        if run["task"] == task and run.get("run_dir") and run["fold"] not in per_fold:
            frames = read_run_frames(run["run_dir"], task)
            if frames is not None:
                per_fold[run["fold"]] = all_labels_on_f1(frames)
    return np.mean(list(per_fold.values()), axis=0) if per_fold else None


def plot_label_f1(runs: Sequence[Mapping[str, Any]], task: str, path: Path) -> Path | None:
    """Grouped bars: per-label F1 (metrics ``f1_<label>``) of each row of a multi-label task, mean over its
    runs, with the all-labels-on reference per label."""
    labels = contract.task_named(task).label_names
    rows: dict[str, list[list[float]]] = {}
    for run in runs:
        metrics = run.get("metrics") or {}
        if run["task"] != task or not all(f"f1_{label}" in metrics for label in labels):
            continue
        rows.setdefault(run["name"], []).append([float(metrics[f"f1_{label}"]) for label in labels])
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 4.4))
    width = 0.8 / len(rows)
    x = np.arange(len(labels))
    zero_marked = False
    for i, (name, values) in enumerate(rows.items()):
        mean = np.mean(values, axis=0)
        pos = x + (i - (len(rows) - 1) / 2) * width
        bars = ax.bar(pos, mean, width, label=name)
        zero = mean < 0.005  # invisible as a bar: mark it, so a 0 never reads as a missing bar
        if zero.any():
            ax.plot(pos[zero], np.full(zero.sum(), 0.012), linestyle="none", marker="v", markersize=5,
                    color=bars.patches[0].get_facecolor(), markeredgecolor="black", markeredgewidth=0.5,
                    label="F1 = 0" if not zero_marked else None)
            zero_marked = True
    reference = all_on_reference(runs, task)
    if reference is not None:
        ax.hlines(reference, x - 0.45, x + 0.45, colors="black", linestyles="--", linewidth=1.1,
                  label="ref: all labels on, 2p/(1+p)")
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"{task} label")
    ax.set_ylabel("F1 (validation)")
    ax.set_title(f"{task}: per-label F1 of each row (mean over runs); dashed: every label predicted on, p = its "
                 "rate on the scored frames", fontsize=10)
    ax.legend(fontsize=7, ncol=min(len(rows) + 2, 7), loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def _read_history(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def plot_training_curves(runs: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Per task (columns): training loss (top) and the selecting split's primary score (bottom) per epoch, a
    line per row; the selected epoch is starred and the validation score reported for it drawn apart."""
    from affbench.report_numbers import selection_mode

    tasks = tasks_of(runs)
    curves: dict[str, dict[str, tuple[Mapping[str, Any], list[dict[str, float]]]]] = {t: {} for t in tasks}
    for task in tasks:
        for name in dict.fromkeys(r["name"] for r in runs if r["task"] == task):
            run = _first_run(runs, name, task)
            history = _read_history(run["run_dir"]) if run else []
            if history:
                curves[task][name] = (run, history)
    tasks = [t for t in tasks if curves[t]]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.2 * len(tasks), 7.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, task in enumerate(tasks):
        key, label = _primary(task)
        loss_ax, score_ax = axes[0][col], axes[1][col]
        splits = set()
        for i, (name, (run, history)) in enumerate(curves[task].items()):
            colour = colours[i % len(colours)]
            epochs = [h.get("epoch", n + 1) for n, h in enumerate(history)]
            loss_ax.plot(epochs, [h.get("train_loss", np.nan) for h in history], marker=".", color=colour,
                         label=name)
            mode = selection_mode(run)
            prefix, split = SELECTION_SPLITS.get(mode, (None, None))
            scores = [h.get(f"{prefix}{key}", np.nan) for h in history] if prefix else []
            if scores and not np.all(np.isnan(scores)):
                splits.add(split)
                score_ax.plot(epochs, scores, marker=".", color=colour, label=name)
            best = run.get("best_epoch")
            if best is not None and best in epochs and scores:
                score_ax.plot([best], [scores[epochs.index(best)]], marker="*", markersize=13, color=colour,
                              markeredgecolor="black", linestyle="none")
            reported = (run.get("metrics") or {}).get(key)
            if best is not None and isinstance(reported, (int, float)) and mode != "validation":
                score_ax.plot([best], [reported], marker="s", markersize=7, markerfacecolor="none",
                              markeredgecolor=colour, markeredgewidth=1.6, linestyle="none")
        loss_ax.set_title(f"{task}: training loss")
        loss_ax.set_ylabel("training loss")
        loss_ax.set_xlabel("epoch")
        loss_ax.legend(fontsize=7)
        where = " / ".join(sorted(splits)) or "no per-epoch scores (train.select: last)"
        score_ax.set_title(f"{task}: {where}", fontsize=9)
        score_ax.set_ylabel(label)
        score_ax.set_xlabel("epoch")
        score_ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], marker="*", markersize=11, color="0.4", markeredgecolor="black", linestyle="none",
                   label="selected epoch (best.pt)"),
        plt.Line2D([], [], marker="s", markerfacecolor="none", markeredgecolor="0.4", markeredgewidth=1.6,
                   linestyle="none", label="validation score reported for it (scored once)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path)


def plot_intervals(numbers: Any, path: Path) -> Path | None:
    """Table 2 as a picture: per column, each row's value and 95 % interval; references as vertical lines."""
    from affbench.output import fixed
    from affbench.references import REFERENCES, reference_title
    from affbench.report_numbers import row_label, table_columns

    panels = [p for p in table_columns([s.run for s in numbers.scores], "report")
              if any(numbers.cell(r, p[0], p[1]) for r in numbers.rows())]
    if not panels:
        return None

    plt = _pyplot()
    rows = numbers.rows()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 2.2 + 0.4 * len(rows)), squeeze=False)
    for ax, (task, metric, title) in zip(axes[0], panels, strict=True):
        for y, row in enumerate(rows):
            cell = numbers.cell(row, task, metric)
            if cell is None:
                continue
            if cell.estimate is not None:
                low, high = cell.estimate.interval
                ax.errorbar(cell.mean, y, xerr=[[cell.mean - low], [high - cell.mean]], fmt="o", color="tab:blue",
                            ecolor="tab:blue", capsize=3)
            else:
                ax.plot(cell.mean, y, "o", color="tab:gray")
        for ref, style in zip(REFERENCES, ("--", ":"), strict=True):
            cell = numbers.reference_cell(ref, task, metric)
            if cell is not None:
                ax.axvline(cell.mean, color="tab:red", linestyle=style, linewidth=1.2,
                           label=f"ref: {reference_title(task, ref)} ({fixed(cell.mean)})")
        ax.set_yticks(range(len(rows)), [row_label(numbers, r) for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(f"{title} ({metric})")
        ax.grid(axis="x", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # below the panel, never over a row
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.suptitle("value and 95 % cluster-bootstrap interval of each row; references as vertical lines", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(runs: Sequence[Mapping[str, Any]], out_dir: str | Path, *, main: str | None = None,
                numbers: Any = None) -> list[Path]:
    """Every plot whose inputs exist, written into `out_dir`; returns the files written.

    `numbers` (an affbench.report_numbers.ReportNumbers) adds ``intervals.png``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = []
    for task in tasks_of(runs):
        kinds = contract.plots(contract.task_named(task))
        shown = _first_run(runs, main, task) or _first_run(runs, None, task)
        if "traces" in kinds and shown:
            written.append(plot_traces(shown, out_dir / f"{task}_traces.png", compare=_best_other_run(runs, shown)))
        if "confusion" in kinds and shown:
            written.append(plot_confusion(shown, out_dir / f"{task}_confusion.png"))
        if "per_label_f1" in kinds:
            written.append(plot_label_f1(runs, task, out_dir / f"{task}_f1.png"))
    written.append(plot_training_curves(runs, out_dir / "training_curves.png"))
    if numbers is not None:
        written.append(plot_intervals(numbers, out_dir / "intervals.png"))
    return [p for p in written if p is not None]
