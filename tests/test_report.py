"""The report: Table 1 (main row per fold), Table 2 (rows x tasks) and Table 3 (paired differences), every
number with its n, its 95 % interval and the label-only references, written as Markdown, CSV, JSON and a plot."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

import affbench
from affbench.data.shard_manifest import LabelStatistics
from affbench.report import build_tables, format_cell, main_row, write_report
from affbench.report_numbers import BootstrapSettings, Cell, ReportNumbers
from affbench.stages.evaluate import VideoOutputs, write_predictions_csv


def _run(name, task, fold, **metrics):
    return {"name": name, "task": task, "fold": fold, "metrics": metrics, "run_dir": None}


# Runs with final metrics only (no predictions): values without intervals.
RUNS = [
    _run("ours", "va", 0, valence=0.5, arousal=0.7, mean=0.6),
    _run("ours", "va", 1, valence=0.3, arousal=0.5, mean=0.4),
    _run("ours", "expr", 0, f1=0.40, accuracy=0.5),
    _run("ours", "expr", 1, f1=0.50, accuracy=0.6),
    _run("ours", "au", 0, f1=0.55),
    _run("ours", "au", 1, f1=0.45),
    _run("wo_tcn", "va", 0, valence=0.2, arousal=0.2, mean=0.2),
    _run("wo_tcn", "expr", 0, f1=0.30),
]


def test_format_cell_says_n_and_never_a_zero_std():
    from affbench.bootstrap import Estimate

    assert format_cell(Cell([0.4, 0.6], None)) == "0.500 ± 0.100 n=2"
    assert format_cell(Cell([0.25], None)) == "0.250 n=1"
    single = Cell([0.4123], Estimate(0.4123, np.linspace(0.35, 0.47, 1001)))
    assert format_cell(single) == "0.412 [0.35, 0.47] n=1"
    assert format_cell(Cell([-0.00001], Estimate(-0.00001, np.zeros(10)))) == "0.000 [0.00, 0.00] n=1"
    assert format_cell(None) == "—"


def test_tables_without_predictions_keep_the_papers_shape():
    tables = build_tables(RUNS)
    assert tables["main_row"] == "ours" and tables["folds"] == [0, 1]
    t1 = tables["table1"]
    assert t1["header"] == ["Metric", "Fold 0", "Fold 1", "All runs"]
    assert [r["metric"] for r in t1["rows"]] == ["Valence CCC", "Arousal CCC", "Expr F1", "AU F1"]
    assert t1["rows"][0]["cells"] == ["Valence CCC", "0.500 n=1", "0.300 n=1", "0.400 ± 0.100 n=2"]
    assert t1["references"] == []  # no frames, no references
    t2 = tables["table2"]
    assert t2["header"] == ["Method", "VA", "Expr", "AU"]
    # No config: the selection mode is today's (validation), and the rows say so.
    assert [r["cells"][0] for r in t2["rows"]] == ["ours †", "wo_tcn †"]
    ours = t2["rows"][0]["values"]
    assert ours["VA"]["mean"] == pytest.approx(0.5) and ours["VA"]["std"] == pytest.approx(0.1)
    assert ours["Expr"]["n"] == 2 and ours["Expr"]["low"] is None
    assert t2["rows"][1]["cells"] == ["wo_tcn †", "0.200 n=1", "0.300 n=1", "—"]


def test_main_row_falls_back_to_the_last_row():
    runs = [_run("a", "va", 0, mean=0.1), _run("b", "va", 0, mean=0.2)]
    assert main_row(runs) == "b" and main_row(runs, "a") == "a" and main_row(RUNS) == "ours"


# -- a small fake set of runs with per-frame predictions ------------------------------------------------------

FOLD_VIDEOS = {0: ["a_left", "a_right", "b", "c", "d"], 1: ["e", "f", "g", "h"]}


def _labels(task, rng, n):
    if task == "va":
        return np.clip(np.cumsum(rng.normal(0, 0.1, (n, 2)), axis=0), -1, 1)
    return rng.integers(0, 8, (n, 1)).astype(float)


def _predict(task, rng, true, noise):
    """Predictions whose error grows with `noise` (0: perfect)."""
    if task == "va":
        return np.clip(true + rng.normal(0, noise, true.shape), -1, 1)
    wrong = rng.random(len(true)) < noise
    return np.where(wrong[:, None], rng.integers(0, 8, true.shape), true)


def _training_shards(tmp_path, task, fold, rng):
    stats = LabelStatistics()
    labels = _labels(task, rng, 200)
    stats.add(labels, np.ones(len(labels), bool))
    directory = tmp_path / "shards" / f"{task}{fold}"
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"label_stats": stats.to_dict()}))
    return directory


def fake_runs(tmp_path, *, seeds=(0,), rows=(("ours", 0.2), ("wo_tcn", 0.6), ("twin", 0.2)), select=None):
    """Runs of `rows` (name, noise) on VA and EXPR, folds 0 and 1, each `seeds`, written as a trainer does."""
    rng = np.random.default_rng(0)
    runs = []
    for task in ("va", "expr"):
        task_obj = affbench.create("task", task)
        for fold, videos in FOLD_VIDEOS.items():
            train_dir = _training_shards(tmp_path, task, fold, rng)
            true = {v: _labels(task, rng, int(rng.integers(40, 80))) for v in videos}
            valid = {v: rng.random(len(t)) > 0.1 for v, t in true.items()}
            for seed in seeds:
                for row, noise in rows:
                    run_dir = tmp_path / f"seed{seed}" / task / row / f"fold{fold}"
                    # "twin" predicts exactly what "ours" predicts: same draws make its difference exactly 0.
                    pred_rng = np.random.default_rng([seed, fold, len("ours" if row == "twin" else row)])
                    values = {v: _predict(task, pred_rng, t, noise).astype(np.float32) for v, t in true.items()}
                    raw = {v: (np.eye(8)[p[:, 0].astype(int)] if task == "expr" else p) for v, p in values.items()}
                    outputs = VideoOutputs(outputs=raw, labels={v: t.astype(np.float32) for v, t in true.items()},
                                           valid=valid, has_face={v: np.ones(len(t), bool) for v, t in true.items()})
                    write_predictions_csv(task_obj, outputs, values, run_dir / "predictions.validation.csv")
                    (run_dir / "data_provenance.json").write_text(
                        json.dumps({"data": {"window_shards": {"train": str(train_dir)}}}))
                    pred = np.concatenate([values[v][valid[v]] for v in videos])
                    target = np.concatenate([true[v][valid[v]] for v in videos])
                    train_cfg = {"seed": seed, **({"select": select[row]} if select and row in select else {})}
                    runs.append({"name": row, "task": task, "fold": fold, "seed": seed, "run_dir": str(run_dir),
                                 "metrics": task_obj.metrics(pred, target), "config": {"train": train_cfg}})
    return runs


def test_rescored_values_equal_the_runs_metrics(tmp_path):
    runs = fake_runs(tmp_path)
    numbers = ReportNumbers(runs, main="ours", settings=BootstrapSettings(draws=200, seed=1))
    for s in numbers.scores:
        for metric, est in s.estimates.items():
            assert est.value == pytest.approx(s.run["metrics"][metric], abs=1e-5)
            assert est.low <= est.value + 1e-9 and est.value - 1e-9 <= est.high
    assert numbers.notes == []
    twin = numbers.difference("twin", "va", "mean")[0]
    assert twin.value == 0.0 and twin.interval == (0.0, 0.0)
    worse, pairs = numbers.difference("wo_tcn", "expr", "f1")
    assert pairs == 2 and worse.high < 0 and worse.excludes_zero


def test_report_files_hold_references_intervals_marks_and_n(tmp_path, capsys):
    runs = fake_runs(tmp_path, select={"wo_tcn": "inner"})
    report = write_report(runs, tmp_path / "report", title="fake", bootstrap=BootstrapSettings(draws=300, seed=5))
    printed = capsys.readouterr().out
    assert all(len(line) <= 120 for line in printed.splitlines())
    assert "Table 3" in printed and "ref: constant" in printed

    md = (tmp_path / "report" / "report.md").read_text()
    assert "## How to read the tables" in md and "300 draws, seed 5" in md
    assert "| Method | VA | Expr |" in md
    table2 = md[md.index("## Table 2"):md.index("## Table 3")]
    ours_line = next(line for line in table2.splitlines() if line.startswith("| ours †"))
    assert " ± " in ours_line and " n=2 " in ours_line and "[" in ours_line  # two folds per cell
    wo_tcn_line = next(line for line in table2.splitlines() if line.startswith("| wo_tcn |"))  # inner: no †
    assert wo_tcn_line.rstrip(" |").endswith("*")  # worse than ours, and the interval says so
    assert "| ref: constant |" in table2 and "| ref: prior | — |" in table2
    table1 = md[md.index("## Table 1: ours † per fold"):md.index("## Table 2")]  # the main row's mark too
    assert "| Expr F1 ref: best constant class † |" in table1 and "| Valence CCC ref: constant mean |" in table1
    assert not re.search(r"±[^|]*n=1 ", md)  # a single run shows its interval, never a std

    with open(tmp_path / "report" / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["kind", "row", "task", "fold", "seed", "metric", "value", "ci_low", "ci_high"]
    assert {r["kind"] for r in rows} == {"run", "reference", "difference"}
    f1_rows = [r for r in rows if r["kind"] == "run" and r["metric"] == "f1"]
    assert len(f1_rows) == 6 and all(float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) for r in f1_rows)

    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["bootstrap"]["draws"] == 300 and saved["bootstrap"]["seed"] == 5
    assert saved["selection"] == {"ours": ["validation"], "wo_tcn": ["inner"], "twin": ["validation"]}
    value = next(v for v in saved["values"] if (v["row"], v["task"], v["fold"], v["metric"]) == ("ours", "va", 1, "mean"))
    assert value["seed"] == 0 and value["low"] <= value["value"] <= value["high"] and value["select"] == "validation"
    assert value["videos"] == 4 and value["clusters"] == 4
    assert {(r["task"], r["reference"]) for r in saved["references"]} == {("va", "constant"), ("expr", "constant"),
                                                                          ("expr", "prior")}
    diff = next(d for d in saved["differences"] if (d["row"], d["task"], d["fold"]) == ("twin", "expr", "all"))
    assert diff["difference"] == 0.0 and diff["low"] == 0.0 and diff["high"] == 0.0 and not diff["excludes_zero"]
    assert saved["table3"]["header"] == ["Method - ours", "ΔVA", "ΔExpr"]
    assert report["plots"] == ["plots/va_traces.png", "plots/expr_confusion.png", "plots/intervals.png"]
    assert (tmp_path / "report" / "plots" / "intervals.png").stat().st_size > 5000


def test_cells_over_seeds_and_folds_average_draw_by_draw(tmp_path):
    runs = fake_runs(tmp_path, seeds=(0, 1), rows=(("ours", 0.2), ("wo_tcn", 0.5)))
    numbers = ReportNumbers(runs, main="ours", settings=BootstrapSettings(draws=100))
    cell = numbers.cell("ours", "va", "mean")
    assert cell.n == 4  # 2 folds x 2 seeds
    per_run = [s.estimates["mean"] for s in numbers.runs_of("ours", "va")]
    np.testing.assert_allclose(cell.estimate.samples, np.mean([e.samples for e in per_run], axis=0))
    assert numbers.cell("ours", "va", "mean", 1).n == 2
    # Seeds pair in order within a fold: 2 folds x 2 seeds.
    assert numbers.difference("wo_tcn", "va", "mean")[1] == 4
