"""PNG plots of a suite (matplotlib, Agg backend: no display needed).

* ``va_traces.png``: predicted vs true valence and arousal over time for a few validation videos;
* ``expr_confusion.png``: the expression confusion matrix (rows: true class, normalised per row);
* ``au_f1.png``: per-AU F1 of every row (mean over folds);
* ``training_curves.png``: training loss and validation primary metric per epoch, per task and row;
* ``intervals.png``: one panel per task, every row's value with its 95 % interval, the references as vertical
  lines (the numbers of Table 2).

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

from affbench.frame_stats import read_predictions, validation_labels

log = logging.getLogger("affbench.plots")

EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
TRACE_VIDEOS = 3


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _first_run(runs: Sequence[Mapping[str, Any]], name: str | None, task: str) -> Mapping[str, Any] | None:
    candidates = [r for r in runs if r["task"] == task and (name is None or r["name"] == name) and r.get("run_dir")]
    candidates.sort(key=lambda r: -1 if r["fold"] is None else r["fold"])
    return candidates[0] if candidates else None


def plot_va_traces(run: Mapping[str, Any], path: Path, *, videos: int = TRACE_VIDEOS) -> Path | None:
    """Predicted vs true valence/arousal of the longest validation videos of one VA run."""
    preds = read_predictions(run["run_dir"])
    labels = validation_labels(run["run_dir"])
    shown = sorted((v for v in preds if v in labels), key=lambda v: -len(labels[v][1]))[:videos]
    if not shown:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown), 2, figsize=(12, 2.6 * len(shown)), squeeze=False)
    for row, video in enumerate(shown):
        true, valid = labels[video]
        for col, name in enumerate(("valence", "arousal")):
            ax = axes[row][col]
            frames = np.arange(1, len(valid) + 1)
            ax.plot(frames, np.where(valid, true[:, col], np.nan), label="true", color="black", linewidth=1.2)
            ax.plot(frames, preds[video][name], label="predicted", color="tab:red", linewidth=1.0)
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{video}: {name}", fontsize=9)
            ax.set_xlabel("frame")
            if row == 0 and col == 0:
                ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{run['name']} fold {run['fold']}: validation traces")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def expr_confusion(run: Mapping[str, Any]) -> np.ndarray | None:
    """int [8, 8] confusion matrix (rows true, columns predicted) over valid frames of one EXPR run."""
    preds = read_predictions(run["run_dir"])
    labels = validation_labels(run["run_dir"])
    matrix = np.zeros((len(EXPR_CLASSES), len(EXPR_CLASSES)), dtype=np.int64)
    found = False
    for video, cols in preds.items():
        if video not in labels:
            continue
        true, valid = labels[video]
        pred = cols["expression"].astype(np.int64)
        keep = valid & (true[:, 0] >= 0)
        np.add.at(matrix, (true[keep, 0].astype(np.int64), pred[keep]), 1)
        found = found or bool(keep.any())
    return matrix if found else None


def plot_expr_confusion(run: Mapping[str, Any], path: Path) -> Path | None:
    """The expression confusion matrix of one EXPR run, normalised per true class."""
    matrix = expr_confusion(run)
    if matrix is None:
        return None
    plt = _pyplot()
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(EXPR_CLASSES)), EXPR_CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(EXPR_CLASSES)), EXPR_CLASSES)
    for i in range(len(EXPR_CLASSES)):
        for j in range(len(EXPR_CLASSES)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{run['name']} fold {run['fold']}: expression confusion")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_au_f1(runs: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Grouped bars: per-AU F1 of each row, mean over its folds."""
    rows: dict[str, list[list[float]]] = {}
    for run in runs:
        metrics = run.get("metrics") or {}
        if run["task"] != "au" or not all(f"f1_{au}" in metrics for au in AU_NAMES):
            continue
        rows.setdefault(run["name"], []).append([float(metrics[f"f1_{au}"]) for au in AU_NAMES])
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 4))
    width = 0.8 / len(rows)
    x = np.arange(len(AU_NAMES))
    for i, (name, values) in enumerate(rows.items()):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, np.mean(values, axis=0), width, label=name)
    ax.set_xticks(x, AU_NAMES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title("per-AU F1 (validation, mean over folds)")
    ax.legend(fontsize=8, ncol=min(len(rows), 5))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _read_history(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def plot_training_curves(runs: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Train loss (top) and validation primary metric (bottom) per epoch: one column per task, a line per row."""
    primary = {"va": "val_mean", "expr": "val_f1", "au": "val_f1"}
    tasks = [t for t in ("va", "expr", "au") if any(r["task"] == t for r in runs)]
    curves: dict[str, dict[str, list[dict[str, float]]]] = {t: {} for t in tasks}
    for task in tasks:
        for name in dict.fromkeys(r["name"] for r in runs if r["task"] == task):
            run = _first_run(runs, name, task)
            history = _read_history(run["run_dir"]) if run else []
            if history:
                curves[task][name] = history
    tasks = [t for t in tasks if curves[t]]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.5 * len(tasks), 6), squeeze=False)
    for col, task in enumerate(tasks):
        for name, history in curves[task].items():
            epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
            axes[0][col].plot(epochs, [h.get("train_loss", np.nan) for h in history], marker=".", label=name)
            axes[1][col].plot(epochs, [h.get(primary[task], np.nan) for h in history], marker=".", label=name)
        axes[0][col].set_title(f"{task}: training loss")
        axes[1][col].set_title(f"{task}: validation {primary[task][4:]}")
        axes[1][col].set_xlabel("epoch")
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


INTERVAL_PANELS = (("va", "mean", "VA (mean CCC)"), ("expr", "f1", "Expr (macro F1)"), ("au", "f1", "AU (mean F1)"))


def plot_intervals(numbers: Any, path: Path) -> Path | None:
    """Table 2 as a picture: per task, each row's value and 95 % interval; references as vertical lines."""
    panels = [p for p in INTERVAL_PANELS if any(numbers.cell(r, p[0], p[1]) for r in numbers.rows())]
    if not panels:
        return None
    from affbench.references import REFERENCE_NAMES, REFERENCES
    from affbench.report import fixed, row_label

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
                           label=f"ref: {REFERENCE_NAMES[(task, ref)]} ({fixed(cell.mean)})")
        ax.set_yticks(range(len(rows)), [row_label(numbers, r) for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # below the panel, never over a row
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.suptitle("value and 95 % cluster-bootstrap interval of each row; references as vertical lines", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_plots(runs: Sequence[Mapping[str, Any]], out_dir: str | Path, *, main: str | None = None,
                numbers: Any = None) -> list[Path]:
    """Every plot whose inputs exist, written into `out_dir`; returns the files written.

    `numbers` (an affbench.report_numbers.ReportNumbers) adds ``intervals.png``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = []
    va_run = _first_run(runs, main, "va") or _first_run(runs, None, "va")
    if va_run:
        written.append(plot_va_traces(va_run, out_dir / "va_traces.png"))
    expr_run = _first_run(runs, main, "expr") or _first_run(runs, None, "expr")
    if expr_run:
        written.append(plot_expr_confusion(expr_run, out_dir / "expr_confusion.png"))
    written.append(plot_au_f1(runs, out_dir / "au_f1.png"))
    written.append(plot_training_curves(runs, out_dir / "training_curves.png"))
    if numbers is not None:
        written.append(plot_intervals(numbers, out_dir / "intervals.png"))
    return [p for p in written if p is not None]
