"""Suite reports shaped like the paper's tables, every number with its reference and its 95 % interval.

* Table 1 (per fold): valence CCC, arousal CCC, EXPR macro F1 and AU mean F1 of the main row, one column per
  fold and one over all runs, then the label-only reference rows of each metric.
* Table 2 (ablations): one line per row of the suite, one column per task (VA = mean of the two CCCs), then the
  reference rows; a cell whose paired difference from the main row excludes 0 is marked ``*``.
* Table 3: those paired differences (row - main row, same frames, same bootstrap draws) with their intervals.

A cell reads ``0.412 ± 0.031 [0.35, 0.47] n=3``: the mean over its n runs (folds x seeds), the population std
over them, and the 95 % cluster-bootstrap interval (affbench.report_numbers says how it is formed). A single
run reads ``0.412 [0.35, 0.47] n=1``. ``write_report`` prints the tables and saves ``report.md``,
``report.csv`` (one line per value with its interval), ``report.json`` and the plots of :mod:`affbench.plots`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affbench import task_contract as contract
from affbench.bootstrap import Estimate
from affbench.output import fixed, format_table, markdown_table
from affbench.references import REFERENCES, reference_title, selected_on_scored
from affbench.report_numbers import (
    SCORED_ON_WINDOWS,
    SELECTED_ON_REPORTED,
    BootstrapSettings,
    Cell,
    ReportNumbers,
    row_label,
    scoring_rule,
    selection_mode,
    table_columns,
    task_metrics,
    tasks_of,
)

MAIN_ROW_DEFAULT = "ours"
SIGNIFICANT = "*"  # the paired difference from the main row excludes 0
MULTITASK_SCORE = "MTL score"  # Table 2's column when a suite has a multi-task row (sum of the primaries)
TERMINAL_WIDTH = 120


def format_interval(low: float, high: float, digits: int = 2) -> str:
    return f"[{fixed(low, digits)}, {fixed(high, digits)}]"


def format_cell(cell: Cell | None, *, mark: str = "") -> str:
    """'mean ± std [low, high] n=k' (n=1: no std), '—' for none; no brackets when a run had no predictions."""
    if cell is None:
        return "—"
    text = fixed(cell.mean) + (f" ± {fixed(cell.std)}" if cell.n > 1 else "")
    if cell.estimate is not None:
        text += " " + format_interval(*cell.estimate.interval)
    return f"{text} n={cell.n}{mark}"


def format_difference(found: tuple[Estimate, int] | None) -> str:
    """'+0.041 [0.012, 0.070] *' (3 decimals: differences are small), '—' for none."""
    if found is None:
        return "—"
    est, _pairs = found
    mark = f" {SIGNIFICANT}" if est.excludes_zero else ""
    return f"{fixed(est.value, sign='+')} {format_interval(*est.interval, digits=3)}{mark}"


def row_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Row names in the order they first appear."""
    return list(dict.fromkeys(run["name"] for run in runs))


def main_row(runs: Sequence[Mapping[str, Any]], preferred: str | None = None) -> str | None:
    """The row Table 1 shows: `preferred`, else 'ours', else the last row."""
    names = row_names(runs)
    for name in (preferred, MAIN_ROW_DEFAULT):
        if name and name in names:
            return name
    return names[-1] if names else None


def _fold_label(fold: int | None) -> str:
    return "official" if fold is None else f"Fold {fold}"


def _reference_label(task: str, name: str) -> str:
    # A reference chosen on the scored frames (e.g. the best constant class) is selected on the reported frames.
    return reference_title(task, name) + (f" {SELECTED_ON_REPORTED}" if selected_on_scored(task, name) else "")


def multitask_score(numbers: ReportNumbers, row: str, tasks: Sequence[str]) -> float | None:
    """The ABAW multi-task score of a row: the sum over the tasks of its primary-metric cells (their means over
    runs), None unless the row has every task. A single-task row sums its separate models, a multi-task row
    its heads."""
    cells = [numbers.cell(row, task, contract.task_named(task).primary_metric) for task in tasks]
    return None if len(tasks) < 2 or any(c is None for c in cells) else float(sum(c.mean for c in cells))


def build_tables(runs: Sequence[Mapping[str, Any]], *, main: str | None = None,
                 numbers: ReportNumbers | None = None) -> dict[str, Any]:
    """Tables 1-3 as plain data: headers, rows of cells, and the numbers behind them."""
    main = main_row(runs, main)
    numbers = numbers or ReportNumbers(runs, main=main)
    folds = numbers.folds()
    table1_rows, table1_refs = [], []
    for task, metric, title in table_columns(runs, "detail"):
        per_fold = {f: numbers.cell(main, task, metric, f) for f in folds} if main else {}
        if not any(per_fold.values()):
            continue
        overall = numbers.cell(main, task, metric)
        table1_rows.append({"metric": title, "task": task, "key": metric,
                            "values": {str(f): c.to_dict() for f, c in per_fold.items() if c},
                            "all": overall.to_dict(),
                            "cells": [title, *(format_cell(per_fold[f]) for f in folds), format_cell(overall)]})
        for name in REFERENCES:
            ref_all = numbers.reference_cell(name, task, metric)
            if ref_all is None:
                continue
            label = f"{title} ref: {_reference_label(task, name)}"
            ref_folds = {f: numbers.reference_cell(name, task, metric, f) for f in folds}
            table1_refs.append({"metric": label, "task": task, "key": metric, "reference": name,
                                "values": {str(f): c.to_dict() for f, c in ref_folds.items() if c},
                                "all": ref_all.to_dict(),
                                "cells": [label, *(format_cell(ref_folds[f]) for f in folds), format_cell(ref_all)]})
    columns = table_columns(runs, "report")
    # With a multi-task row the table adds the multi-task score of every row that has all the tasks.
    with_score = any(run.get("multitask") for run in runs)
    table2_rows, table3_rows = [], []
    for name in numbers.rows():
        cells, values, diff_cells, diffs = [row_label(numbers, name)], {}, [row_label(numbers, name)], {}
        for task, metric, title in columns:
            cell = numbers.cell(name, task, metric)
            found = numbers.difference(name, task, metric)
            cells.append(format_cell(cell, mark=f" {SIGNIFICANT}" if found and found[0].excludes_zero else ""))
            diff_cells.append(format_difference(found))
            if cell:
                values[title] = cell.to_dict()
            if found:
                est, pairs = found
                diffs[title] = {"difference": est.value, "low": est.low, "high": est.high, "pairs": pairs,
                                "excludes_zero": est.excludes_zero}
        if with_score:
            total = multitask_score(numbers, name, tasks_of(runs))
            cells.append("—" if total is None else fixed(total))
            if total is not None:
                values[MULTITASK_SCORE] = {"mean": total}
        table2_rows.append({"row": name, "select": numbers.row_selection(name), "scoring": numbers.row_scoring(name),
                            "values": values, "cells": cells})
        if name != main:
            table3_rows.append({"row": name, "values": diffs, "cells": diff_cells})
    table2_refs = []
    for ref in REFERENCES:
        cells, values = [f"ref: {ref}"], {}
        for task, metric, title in columns:
            cell = numbers.reference_cell(ref, task, metric)
            cells.append(format_cell(cell))
            if cell:
                values[title] = {**cell.to_dict(), "predicts": reference_title(task, ref)}
        if values:
            table2_refs.append({"row": f"ref: {ref}", "values": values, "cells": cells + ["—"] * with_score})
    return {
        "main_row": main,
        "main_label": row_label(numbers, main) if main else None,
        "folds": folds,
        "on_windows": numbers.on_windows(),
        "table1": {"header": ["Metric", *(_fold_label(f) for f in folds), "All runs"], "rows": table1_rows,
                   "references": table1_refs},
        "table2": {"header": ["Method", *(c[2] for c in columns), *[MULTITASK_SCORE] * with_score],
                   "rows": table2_rows, "references": table2_refs},
        "table3": {"header": [f"Method - {main}", *(f"Δ{c[2]}" for c in columns)], "rows": table3_rows},
    }


WINDOWS_LEGEND = (
    f"`{SCORED_ON_WINDOWS}`: scored on windows (`eval.scoring: windows`, the authors' earlier code): each validation "
    "video counts the frames of its full windows (`data.window` every `data.stride`), a frame in two windows "
    "twice, a video's tail and a video shorter than the window never; every value of the row, its interval and "
    "its paired difference count frames that way. Not ABAW's score, which counts every labelled frame once.")


def legend(numbers: ReportNumbers) -> list[str]:
    """How to read the tables, one bullet each."""
    s = numbers.settings
    return [
        f"`0.412 [0.35, 0.47]`: the value and its 95 % interval, a cluster bootstrap over the validation videos "
        f"({s.draws} draws, seed {s.seed}): the frames of a video are resampled together, and `<name>_left` / "
        f"`<name>_right` count as one video. It covers which videos were validated on, the trained models held fixed.",
        "`± 0.031 n=3`: a cell over n runs (folds × seeds) shows their mean and population std; its interval is "
        "that of the mean, each run resampled with its own fold's draws. `n=1` is one run: no std, its interval.",
        "`ref:` rows: label-only references scored on the same frames, built from each fold's training labels. "
        "constant: the training mean (VA; the CCC of a constant is 0), the best single class (Expr; chosen on the "
        "reported frames) and every AU on (AU). prior: predictions drawn from the training class / AU frequencies "
        "(the F1 of the expected confusion counts).",
        f"`{SIGNIFICANT}`: the row's paired difference from `{numbers.main}` (Table 3: same frames, same draws) has "
        "a 95 % interval that excludes 0.",
        f"`{SELECTED_ON_REPORTED}`: selected on the reported frames (`train.select: validation`, the default when a "
        "config has no `train.select`): the epoch kept was chosen on the very frames the table scores, which "
        "flatters the number.",
        *([WINDOWS_LEGEND] if numbers.on_windows() else []),
        "A value without brackets comes from a run whose per-frame predictions are missing: no interval.",
    ]


def scope_note(datasets: Sequence[Mapping[str, Any]], folds: Sequence[int | None]) -> str | None:
    """What a report on these datasets and folds can and cannot show (None for several folds of real data)."""
    names = [d.get("name") for d in datasets]
    fold_text = f"{len(folds)} fold{'s' if len(folds) != 1 else ''}"
    if "synthaffect" in names:
        size = next((d.get("size") for d in datasets if d.get("name") == "synthaffect"), None)
        return (f"SynthAffect{f' {size}' if size else ''} (generated), {fold_text}: a smoke test that the protocol "
                "runs end to end, not evidence about Aff-Wild2 and not a ranking of the rows. For numbers that mean "
                "something: more folds (--folds all), a larger SynthAffect, or --data affwild2.")
    if len(folds) == 1:
        return ("One fold: the intervals cover which validation videos were drawn, not which fold; run every fold "
                "(--folds all) before comparing rows.")
    return None


def reading_guide(main: str | None, runs: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """How to read the printed tables, for the end of a suite's output (report.md's legend has the detail)."""
    on_windows = any(scoring_rule(run).on_windows for run in runs)
    return [
        "`0.412 [0.35, 0.47] n=1`  the value, its 95 % interval (bootstrap over validation videos), runs in the "
        "cell",
        "`ref: constant`, `ref: prior`  label-only predictors scored on the same frames: a row no better than "
        "its references learnt nothing usable",
        f"`{SIGNIFICANT}`  the row's paired difference from `{main}` (Table 3) has an interval that excludes 0",
        f"`{SELECTED_ON_REPORTED}`  its epoch was chosen on the reported frames (`train.select: validation`): "
        "optimistic",
        *([f"`{SCORED_ON_WINDOWS}`  scored on windows (`eval.scoring: windows`): tails dropped, a frame counted "
           "once per window holding it; not ABAW's every-frame-once score"] if on_windows else []),
    ]


def provenance_lines(runs: Sequence[Mapping[str, Any]], *, started: str | None = None,
                     seconds: float | None = None) -> list[str]:
    """How a report was made: machine, time, versions and the digest of every config, for its last section."""
    from affbench import __version__
    from affbench.published_results import config_digests, machine_description

    machine = machine_description()
    lines = [
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['gpu'] or 'no GPU'}, {machine['system']}",
        f"versions: affbench {__version__}, Python {machine['python']}, torch {machine['torch']}",
    ]
    if started is not None:
        lines.append(f"started {started}" + (f", {seconds:.0f} s wall" if seconds is not None else ""))
    digestible = [r for r in runs if r.get("config") and "config_file" in r]
    if digestible:
        lines.append("configs (sha256 of the resolved config): " + "; ".join(
            f"{d['task']}/{d['row']} `{d['config_file']}` {d['digest'][:12]}" for d in config_digests(digestible)))
    return lines


def _wrapped_table(rows: Sequence[Sequence[str]], header: Sequence[str], width: int = TERMINAL_WIDTH) -> str:
    """format_table, split into column groups (the first column repeated) when it would pass `width`."""
    groups: list[list[int]] = [[]]
    for i in range(1, len(header)):
        candidate = [0, *groups[-1], i]
        text = format_table([tuple(r[j] for j in candidate) for r in rows], tuple(header[j] for j in candidate))
        if groups[-1] and max(len(line) for line in text.splitlines()) > width:
            groups.append([i])
        else:
            groups[-1].append(i)
    return "\n\n".join(format_table([tuple(r[j] for j in [0, *g]) for r in rows], tuple(header[j] for j in [0, *g]))
                       for g in groups)


def _all_rows(table: Mapping[str, Any]) -> list[list[str]]:
    return [r["cells"] for r in table["rows"]] + [r["cells"] for r in table.get("references", [])]


def _titles(tables: Mapping[str, Any]) -> dict[str, str]:
    return {
        "table1": f"Table 1: {tables['main_label']} per fold (validation), references below",
        "table2": "Table 2: rows x tasks, mean ± std over runs, 95 % interval, n runs (VA: mean of valence and "
                  "arousal CCC)",
        "table3": f"Table 3: paired difference from {tables['main_label']} (same frames, same draws), 95 % interval",
    }


def render_text(tables: Mapping[str, Any], *, title: str) -> str:
    """The tables as terminal text (column groups when wider than 120 characters)."""
    titles = _titles(tables)
    parts = [title, ""]
    for key in ("table1", "table2", "table3"):
        table = tables[key]
        if table["rows"]:
            parts += [titles[key], _wrapped_table(_all_rows(table), table["header"]), ""]
    windows = f"; {SCORED_ON_WINDOWS} scored on windows" if tables.get("on_windows") else ""
    parts.append(f"{SIGNIFICANT} difference from {tables['main_row']} excludes 0; {SELECTED_ON_REPORTED} selected on "
                 f"the reported frames{windows}; legend in report.md")
    return "\n".join(parts)


def tables_markdown(tables: Mapping[str, Any], *, legend_lines: Sequence[str] = (), level: int = 2) -> str:
    """How to read the tables, then the tables, as Markdown with headings of `level` (what a README quotes)."""
    titles = _titles(tables)
    hashes = "#" * level
    parts: list[str] = []
    if legend_lines:
        parts += [f"{hashes} How to read the tables", "", *(f"- {line}" for line in legend_lines), ""]
    for key in ("table1", "table2", "table3"):
        table = tables[key]
        if table["rows"]:
            parts += [f"{hashes} {titles[key]}", "", markdown_table(table["header"], _all_rows(table)), ""]
    return "\n".join(parts)


def render_markdown(tables: Mapping[str, Any], *, title: str, legend_lines: Sequence[str] = (),
                    plots: Sequence[str] = (), notes: Sequence[str] = (), scope: str | None = None,
                    made: Sequence[str] = ()) -> str:
    """The report as Markdown: what it can show, how to read it, the tables, notes, links to the plots, and
    how it was made."""
    parts = [f"# {title}", ""]
    if scope:
        parts += [f"**What this report can show.** {scope}", ""]
    parts.append(tables_markdown(tables, legend_lines=legend_lines))
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    if plots:
        parts += ["## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    if made:
        parts += ["## How this report was made", "", *(f"- {line}" for line in made), ""]
    return "\n".join(parts)


CSV_FIELDS = ["kind", "row", "task", "fold", "seed", "metric", "value", "ci_low", "ci_high"]


def long_rows(numbers: ReportNumbers) -> list[dict[str, Any]]:
    """report.csv: every run metric (rescored ones with their interval), every reference and every difference."""
    out = []
    for s in numbers.scores:
        fold = "official" if s.fold is None else s.fold
        for metric, value in sorted((s.run.get("metrics") or {}).items()):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            est = s.estimates.get(metric)
            out.append({"kind": "run", "row": s.row, "task": s.task, "fold": fold, "seed": s.seed, "metric": metric,
                        "value": s.values.get(metric, value), "ci_low": est.low if est else "",
                        "ci_high": est.high if est else ""})
    for ref in numbers.references_json():
        out.append({"kind": "reference", "row": f"ref: {ref['reference']}", "task": ref["task"], "fold": ref["fold"],
                    "seed": "", "metric": ref["metric"], "value": ref["value"], "ci_low": ref["low"],
                    "ci_high": ref["high"]})
    for diff in numbers.differences_json():
        out.append({"kind": "difference", "row": diff["row"], "task": diff["task"], "fold": diff["fold"], "seed": "",
                    "metric": diff["metric"], "value": diff["difference"], "ci_low": diff["low"],
                    "ci_high": diff["high"]})
    return out


def write_report(runs: Sequence[Mapping[str, Any]], out_dir: str | Path, *, title: str, main: str | None = None,
                 plots: bool = True, notes: Sequence[str] = (), echo: bool = True,
                 bootstrap: BootstrapSettings | None = None, scope: str | None = None,
                 made: Sequence[str] = ()) -> dict[str, Any]:
    """Print the tables (when `echo`) and write report.md/.csv/.json and the plots into `out_dir`.

    `scope` (see scope_note) opens report.md; `made` (see provenance_lines) closes it."""
    from affbench.output import write_json, write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    main = main_row(runs, main)
    numbers = ReportNumbers(runs, main=main, settings=bootstrap)
    tables = build_tables(runs, main=main, numbers=numbers)
    notes = [*notes, *numbers.notes]
    plot_files: list[str] = []
    if plots:
        from affbench.plots import write_plots

        plot_files = [str(p.relative_to(out_dir)) for p in write_plots(runs, out_dir / "plots", main=main,
                                                                       numbers=numbers)]
    text = render_text(tables, title=title)
    if echo:
        print(text)
    write_text_atomic(out_dir / "report.md", render_markdown(tables, title=title, legend_lines=legend(numbers),
                                                             plots=plot_files, notes=notes, scope=scope,
                                                             made=made))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(long_rows(numbers))
    write_text_atomic(out_dir / "report.csv", buffer.getvalue())
    report = {
        "title": title, **tables, "bootstrap": numbers.settings.to_dict(), "metrics": {task: task_metrics(task) for task in tasks_of(runs)},
        "values": numbers.values_json(), "references": numbers.references_json(),
        "differences": numbers.differences_json(),
        "selection": {row: numbers.row_selection(row) for row in numbers.rows()},
        "scoring": {row: numbers.row_scoring(row) for row in numbers.rows()},
        "legend": legend(numbers), "plots": plot_files, "notes": list(notes), "scope": scope,
        "made": list(made),
        "tables_markdown": tables_markdown(tables, legend_lines=legend(numbers), level=4),
        "runs": [{**{k: run.get(k) for k in ("name", "task", "fold", "seed", "metrics", "run_dir")},
                  "select": selection_mode(run), "scoring": scoring_rule(run).to_dict()} for run in runs],
    }
    write_json(out_dir / "report.json", json.loads(json.dumps(report, default=str)))
    return report
