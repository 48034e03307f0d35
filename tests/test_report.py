"""The report: Table 1 (main row per fold) and Table 2 (rows x tasks, mean +/- std over folds) from run
metrics, written as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import json
import math

import pytest

from affbench.report import build_tables, format_cell, main_row, write_report


def _run(name, task, fold, **metrics):
    return {"name": name, "task": task, "fold": fold, "metrics": metrics, "run_dir": None}


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


def test_format_cell_is_mean_and_population_std():
    assert format_cell([0.4, 0.6]) == "0.5000 ± 0.1000"
    assert format_cell([0.25]) == "0.2500 ± 0.0000"
    assert format_cell([0.25], expected=2) == "0.2500 ± 0.0000 (n=1)"
    assert format_cell([]) == "—"


def test_tables_have_the_papers_shape():
    tables = build_tables(RUNS)
    assert tables["main_row"] == "ours" and tables["folds"] == [0, 1]
    t1 = tables["table1"]
    assert t1["header"] == ["Metric", "Fold 0", "Fold 1", "Mean ± std"]
    assert [r["metric"] for r in t1["rows"]] == ["Valence CCC", "Arousal CCC", "Expr F1", "AU F1"]
    assert t1["rows"][0]["cells"] == ["Valence CCC", "0.5000", "0.3000", "0.4000 ± 0.1000"]
    t2 = tables["table2"]
    assert t2["header"] == ["Method", "VA", "Expr", "AU"]
    assert [r["row"] for r in t2["rows"]] == ["ours", "wo_tcn"]
    ours = t2["rows"][0]["values"]
    assert ours["VA"]["mean"] == pytest.approx(0.5) and ours["VA"]["std"] == pytest.approx(0.1)
    assert ours["Expr"]["folds"] == 2
    assert t2["rows"][1]["cells"] == ["wo_tcn", "0.2000 ± 0.0000 (n=1)", "0.3000 ± 0.0000 (n=1)", "—"]


def test_main_row_falls_back_to_the_last_row():
    runs = [_run("a", "va", 0, mean=0.1), _run("b", "va", 0, mean=0.2)]
    assert main_row(runs) == "b" and main_row(runs, "a") == "a" and main_row(RUNS) == "ours"


def test_write_report_files(tmp_path, capsys):
    report = write_report(RUNS, tmp_path, title="t", plots=False)
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "Table 2" in printed and "wo_tcn" in printed
    md = (tmp_path / "report.md").read_text()
    assert "| Method | VA | Expr | AU |" in md and "| ours | 0.5000 ± 0.1000 |" in md
    with open(tmp_path / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"row", "task", "fold", "metric", "value"}
    expected = sum(len(r["metrics"]) for r in RUNS)
    assert len(rows) == expected
    assert any(r["row"] == "wo_tcn" and r["metric"] == "f1" and math.isclose(float(r["value"]), 0.3) for r in rows)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["table2"]["header"] == report["table2"]["header"] and len(saved["runs"]) == len(RUNS)
