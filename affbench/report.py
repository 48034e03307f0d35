"""Suite reports shaped like the paper's tables, from the final metrics of each run.

* Table 1 (per fold): valence CCC, arousal CCC, EXPR macro F1 and AU mean F1 of the main row, one column per
  fold, with mean +/- std over folds.
* Table 2 (ablations): one line per row of the suite, one column per task (VA = mean of the two CCCs), each
  cell the mean +/- std over the folds that ran.

``write_report`` prints both tables and saves ``report.md``, ``report.csv`` (one line per row, task, fold and
metric), ``report.json`` and the PNG plots of :mod:`affbench.plots`. Std is the population std over folds
(0 for a single fold); every cell says how many folds it holds when they differ.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affbench.cli_components import format_table

# (task, metric key in metrics.json, column title): what the tables show, in the paper's order.
TABLE1_METRICS = (
    ("va", "valence", "Valence CCC"),
    ("va", "arousal", "Arousal CCC"),
    ("expr", "f1", "Expr F1"),
    ("au", "f1", "AU F1"),
)
TABLE2_COLUMNS = (("va", "mean", "VA"), ("expr", "f1", "Expr"), ("au", "f1", "AU"))
MAIN_ROW_DEFAULT = "ours"


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def format_cell(values: Sequence[float], *, expected: int | None = None) -> str:
    """'mean ± std' (4 decimals) of the values, '—' for none, with '(n=k)' when k differs from `expected`."""
    if not values:
        return "—"
    mean, std = _mean_std(values)
    cell = f"{mean:.4f} ± {std:.4f}"
    if expected is not None and len(values) != expected:
        cell += f" (n={len(values)})"
    return cell


def metric_values(runs: Sequence[Mapping[str, Any]], row: str, task: str, metric: str) -> dict[int | None, float]:
    """fold -> value of `metric` for the runs of `row` and `task` that have final metrics."""
    out: dict[int | None, float] = {}
    for run in runs:
        metrics = run.get("metrics") or {}
        if run["name"] == row and run["task"] == task and metric in metrics:
            out[run["fold"]] = float(metrics[metric])
    return out


def row_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Row names in the order they first appear."""
    names: list[str] = []
    for run in runs:
        if run["name"] not in names:
            names.append(run["name"])
    return names


def main_row(runs: Sequence[Mapping[str, Any]], preferred: str | None = None) -> str | None:
    """The row Table 1 shows: `preferred`, else 'ours', else the last row."""
    names = row_names(runs)
    for name in (preferred, MAIN_ROW_DEFAULT):
        if name and name in names:
            return name
    return names[-1] if names else None


def _fold_label(fold: int | None) -> str:
    return "official" if fold is None else f"Fold {fold}"


def build_tables(runs: Sequence[Mapping[str, Any]], *, main: str | None = None) -> dict[str, Any]:
    """Table 1 and Table 2 as plain data: headers, rows of cells, and the numbers behind them."""
    main = main_row(runs, main)
    folds = sorted({run["fold"] for run in runs}, key=lambda f: -1 if f is None else f)
    table1_rows = []
    for task, metric, title in TABLE1_METRICS:
        per_fold = metric_values(runs, main, task, metric) if main else {}
        if not per_fold:
            continue
        cells = [f"{per_fold[f]:.4f}" if f in per_fold else "—" for f in folds]
        table1_rows.append({"metric": title, "task": task, "key": metric, "values": {
            str(f): per_fold[f] for f in folds if f in per_fold}, "cells": [title, *cells,
                                                                           format_cell(list(per_fold.values()))]})
    tasks_present = {run["task"] for run in runs}
    columns = [c for c in TABLE2_COLUMNS if c[0] in tasks_present]
    table2_rows = []
    for name in row_names(runs):
        cells, numbers = [name], {}
        for task, metric, title in columns:
            values = list(metric_values(runs, name, task, metric).values())
            cells.append(format_cell(values, expected=len(folds)))
            if values:
                mean, std = _mean_std(values)
                numbers[title] = {"mean": mean, "std": std, "folds": len(values)}
        table2_rows.append({"row": name, "values": numbers, "cells": cells})
    return {
        "main_row": main,
        "folds": folds,
        "table1": {"header": ["Metric", *(_fold_label(f) for f in folds), "Mean ± std"], "rows": table1_rows},
        "table2": {"header": ["Method", *(c[2] for c in columns)], "rows": table2_rows},
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_text(tables: Mapping[str, Any], *, title: str) -> str:
    """Both tables as terminal text."""
    t1, t2 = tables["table1"], tables["table2"]
    parts = [title, ""]
    if t1["rows"]:
        parts += [f"Table 1: {tables['main_row']} per fold (validation)",
                  format_table([tuple(r["cells"]) for r in t1["rows"]], tuple(t1["header"])), ""]
    parts += ["Table 2: rows x tasks, mean ± std over folds (VA: mean of valence and arousal CCC)",
              format_table([tuple(r["cells"]) for r in t2["rows"]], tuple(t2["header"]))]
    return "\n".join(parts)


def render_markdown(tables: Mapping[str, Any], *, title: str, plots: Sequence[str] = (),
                    notes: Sequence[str] = ()) -> str:
    """The report as Markdown: both tables, notes, and links to the plots."""
    t1, t2 = tables["table1"], tables["table2"]
    parts = [f"# {title}", ""]
    if t1["rows"]:
        parts += [f"## Table 1: `{tables['main_row']}` per fold (validation)", "",
                  markdown_table(t1["header"], [r["cells"] for r in t1["rows"]]), ""]
    parts += ["## Table 2: rows x tasks, mean ± std over folds", "",
              "VA is the mean of the valence and arousal CCC; Expr is the macro F1 over 8 classes; AU is the "
              "mean F1 over 12 action units.", "", markdown_table(t2["header"], [r["cells"] for r in t2["rows"]]),
              ""]
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    if plots:
        parts += ["## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    return "\n".join(parts)


def long_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per (row, task, fold, metric) of every run with final metrics."""
    out = []
    for run in runs:
        for metric, value in sorted((run.get("metrics") or {}).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append({"row": run["name"], "task": run["task"],
                            "fold": "official" if run["fold"] is None else run["fold"],
                            "metric": metric, "value": value})
    return out


def write_report(runs: Sequence[Mapping[str, Any]], out_dir: str | Path, *, title: str, main: str | None = None,
                 plots: bool = True, notes: Sequence[str] = (), echo: bool = True) -> dict[str, Any]:
    """Print the tables (when `echo`) and write report.md/.csv/.json and the plots into `out_dir`."""
    from affbench.train.run_dir import write_json, write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(runs, main=main)
    plot_files: list[str] = []
    if plots:
        from affbench.plots import write_plots

        plot_files = [str(p.relative_to(out_dir)) for p in write_plots(runs, out_dir / "plots",
                                                                       main=tables["main_row"])]
    text = render_text(tables, title=title)
    if echo:
        print(text)
    write_text_atomic(out_dir / "report.md", render_markdown(tables, title=title, plots=plot_files, notes=notes))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["row", "task", "fold", "metric", "value"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(long_rows(runs))
    write_text_atomic(out_dir / "report.csv", buffer.getvalue())
    report = {"title": title, **tables, "plots": plot_files, "notes": list(notes),
              "runs": [{k: run.get(k) for k in ("name", "task", "fold", "metrics", "run_dir")} for run in runs]}
    write_json(out_dir / "report.json", json.loads(json.dumps(report, default=str)))
    return report
