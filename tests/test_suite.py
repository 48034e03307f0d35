"""Suites: configs x folds with shared stages run once, suite.json with everything a run needs to be
understood, the report files, skipping finished rows, and a third-party backbone through every stage."""

from __future__ import annotations

import csv
import json

import pytest
from stage_fixtures import TINY_BACKBONE, TINY_PLUGIN, forwards, tiny_config

from affbench.cli import main
from affbench.core.config import config_digest, to_yaml
from affbench.published_results import RESULTS_FILE, read_results
from affbench.suite import (
    SuiteError,
    builtin_suite_path,
    data_overrides,
    load_suite,
    parse_folds,
    resolve_suite,
    run_suite,
)

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


def _write_suite(tmp_path, synth_root):
    """Two rows (ours, wo_finetune) on VA plus ours on EXPR, all with the third-party tiny backbone."""
    configs = {
        "va_ours.yaml": tiny_config(synth_root),
        "va_wo_finetune.yaml": tiny_config(synth_root, name="wo_finetune", finetune={"enabled": False}),
        # The tiny EXPR fold trains on one source video: none to hold out for train.select: inner.
        "expr_ours.yaml": tiny_config(synth_root, task="expr", data={"folds": 2}, train={"select": "last"}),
    }
    for name, config in configs.items():
        (tmp_path / name).write_text(to_yaml(config))
    suite = tmp_path / "tiny_suite.yaml"
    suite.write_text("name: tiny\nfolds: [0]\nconfigs: [va_ours.yaml, va_wo_finetune.yaml, expr_ours.yaml]\n")
    return suite


def test_suite_runs_a_third_party_backbone_through_every_stage(home, synth_root, tmp_path, capsys):
    suite = load_suite(_write_suite(tmp_path, synth_root))
    out = tmp_path / "out"
    before = forwards()
    run_suite(suite, out, quiet=True)
    first_forwards = forwards() - before
    assert first_forwards > 0
    printed = capsys.readouterr().out
    assert "Table 2" in printed and "wo_finetune" in printed

    # suite.json: resolved config, seed, plugin versions and data provenance of every run.
    saved = json.loads((out / "suite.json").read_text())
    assert saved["folds"] == [0] and len(saved["runs"]) == 3
    for run in saved["runs"]:
        assert run["status"] == "trained" and run["seed"] == run["config"]["train"]["seed"]
        assert run["config"]["backbone"]["name"] == TINY_BACKBONE
        assert {"kind": "backbone", "name": TINY_BACKBONE, "plugin": TINY_PLUGIN, "version": "0.0.1"} in run[
            "components"]
        assert run["data_provenance"]["dataset"]["name"] == "synthaffect"
        assert run["metrics"] and (out / run["task"] / run["name"] / "fold0" / "metrics.json").is_file()
    assert any(p["name"] == TINY_PLUGIN for p in saved["environment"]["plugins"])
    assert saved["data"]["datasets"][0]["size"] == "tiny"
    # Shared stages: one fine-tune per task and fold, one extraction per backbone identity.
    finetunes = [p for p in (home / "cache" / "finetune").iterdir() if (p / "manifest.json").is_file()]
    assert len(finetunes) == 2

    # Report files with the right rows and columns; no row selected on the frames it reports (no †).
    md = (out / "report.md").read_text()
    assert "| Method | VA | Expr |" in md and "| ours |" in md and "| wo_finetune |" in md and "| ours † |" not in md
    assert "| ref: constant |" in md and "| ref: prior |" in md
    with open(out / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["row"], r["task"]) for r in rows if r["kind"] == "run"} == {("ours", "va"), ("wo_finetune", "va"),
                                                                          ("ours", "expr")}
    report = json.loads((out / "report.json").read_text())
    assert [r["row"] for r in report["table2"]["rows"]] == ["ours", "wo_finetune"]
    assert [r["metric"] for r in report["table1"]["rows"]] == ["Valence CCC", "Arousal CCC", "Expr F1"]
    # Every value has its interval, rescored from the run's predictions to its own metrics.json value.
    assert report["bootstrap"]["draws"] == 1000 and report["bootstrap"]["seed"] == 0
    scored = [v for v in report["values"] if v["metric"] in ("valence", "arousal", "mean", "f1")]
    assert len(scored) == 3 + 3 + 1
    for value in scored:
        assert value["low"] <= value["value"] <= value["high"]
        assert value["select"] == ("last" if value["task"] == "expr" else "inner")
        assert value["value"] == pytest.approx(value["metrics_json"], abs=1e-4)
    assert any(v["clusters"] < v["videos"] for v in scored)  # the _left/_right tracks of a video: one cluster
    assert {(r["task"], r["reference"]) for r in report["references"]} == {
        ("va", "constant"), ("expr", "constant"), ("expr", "prior")}
    assert any(d["row"] == "wo_finetune" and d["fold"] == "all" for d in report["differences"])
    # results.json: what the README quotes, with the digest of every resolved config the suite ran.
    results = read_results(out / RESULTS_FILE)
    assert {(c["task"], c["row"]) for c in results["configs"]} == {("va", "ours"), ("va", "wo_finetune"),
                                                                    ("expr", "ours")}
    by_row = {(c["task"], c["row"]): c["digest"] for c in results["configs"]}
    assert by_row[("va", "ours")] == config_digest(saved["runs"][0]["config"])
    assert "ref: constant" in results["tables_markdown"] and results["wall_seconds"] > 0
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert {"va_traces.png", "expr_confusion.png", "training_curves.png", "intervals.png"} <= plots
    assert all((out / "plots" / p).stat().st_size > 1000 for p in plots)

    # report.md stands on its own: what it can show first, how it was made last.
    assert md.startswith("# affbench suite: tiny\n\n**What this report can show.** SynthAffect tiny (generated), 1 fold:")
    made = md[md.index("## How this report was made"):]
    assert "- machine: " in made and "- versions: affbench " in made and " s wall" in made
    assert "va/wo_finetune `" in made and made.count("configs (sha256 of the resolved config)") == 1

    # A second run (through the CLI) skips every finished row and recomputes nothing, and ends by saying where
    # the report is, how to read it and what it can show.
    before = forwards()
    capsys.readouterr()
    assert main(["suite", str(suite.path), "--out", str(out), "--no-plots"]) == 0
    assert forwards() == before
    printed = capsys.readouterr().out
    assert printed.startswith(f"suite 'tiny': runs and report go to {out}; generated data and the stage cache under "
                              f"{home} ($AFFBENCH_HOME), the cache ")
    closing = printed[printed.index("suite 'tiny': 3 runs in "):]
    assert f"Report: {out / 'report.md'}" in closing and "Reading the tables:" in closing
    assert "`ref: constant`, `ref: prior`" in closing and "`*`  the row's paired difference from `ours`" in closing
    assert "What this run can show: SynthAffect tiny (generated), 1 fold: a smoke test" in closing
    assert f"Runs: {out} (" in closing and "affbench cache list" in closing
    again = json.loads((out / "suite.json").read_text())
    assert all(r["status"].startswith("skipped") for r in again["runs"])
    assert again["runs"][0]["metrics"] == saved["runs"][0]["metrics"]

    # A row whose config changed is retrained (from scratch); the others stay skipped.
    (tmp_path / "va_wo_finetune.yaml").write_text(to_yaml(tiny_config(
        synth_root, name="wo_finetune", finetune={"enabled": False}, train={"lr": 5.0e-4})))
    changed = run_suite(load_suite(suite.path), out, quiet=True, plots=False, echo=False)
    assert [r["status"] for r in changed["runs"]] == ["skipped (has metrics.json)", "trained",
                                                      "skipped (has metrics.json)"]
    assert forwards() == before  # stage 3 only: the features are cached


def test_suite_seeds_are_a_dimension_of_runs_and_cells(home, synth_root, tmp_path):
    (tmp_path / "va.yaml").write_text(to_yaml(tiny_config(synth_root, finetune={"enabled": False})))
    (tmp_path / "seeds.yaml").write_text("name: seeds\nfolds: [0]\nseeds: [0, 1]\nconfigs: [va.yaml]\n"
                                         "bootstrap: {draws: 200, seed: 3}\n")
    out = tmp_path / "out"
    record = run_suite(load_suite(tmp_path / "seeds.yaml"), out, quiet=True, plots=False, echo=False)
    assert [(r["seed"], r["config"]["finetune"]["seed"]) for r in record["runs"]] == [(0, 0), (1, 1)]
    assert all((out / f"seed{s}" / "va" / "ours" / "fold0" / "metrics.json").is_file() for s in (0, 1))
    report = json.loads((out / "report.json").read_text())
    assert report["bootstrap"]["draws"] == 200 and report["bootstrap"]["seed"] == 3
    assert sorted(v["seed"] for v in report["values"] if v["metric"] == "mean") == [0, 1]
    cell = report["table2"]["rows"][0]
    assert cell["values"]["VA"]["n"] == 2 and " ± " in cell["cells"][1] and cell["cells"][1].endswith("n=2")


def test_parse_folds():
    assert parse_folds("0", 5) == [0]
    assert parse_folds("0-4", 5) == [0, 1, 2, 3, 4]
    assert parse_folds("all", 3) == [0, 1, 2]
    assert parse_folds("2,0", 5) == [0, 2]
    assert parse_folds(2, 5) == [0, 1] and parse_folds([1], 5) == [1]
    with pytest.raises(SuiteError, match="0..4"):
        parse_folds("5", 5)
    with pytest.raises(SuiteError, match="expected"):
        parse_folds("first", 5)


def test_builtin_paper_suite_resolves_per_data_choice():
    scaled = resolve_suite("paper")
    assert builtin_suite_path("paper", None).parent.name == "synthaffect"
    assert len(scaled.configs) == 16 and all(p.is_file() for p in scaled.configs)
    paper = resolve_suite("paper", "affwild2")
    assert paper.path.parent.name == "paper" and paper.folds == 5
    # Every SynthAffect row, the multi-task row included, has its Aff-Wild2 twin.
    assert [p.relative_to(paper.path.parent) for p in paper.configs] == \
        [p.relative_to(scaled.path.parent) for p in scaled.configs]
    with pytest.raises(SuiteError, match="no built-in suite"):
        resolve_suite("nonesuch")


def test_data_overrides():
    assert data_overrides(None, None) == {}
    over = data_overrides("affwild2", "/data/aff")
    assert over["data.dataset"] == {"name": "affwild2", "options": {"root": "/data/aff"}}
    with pytest.raises(SuiteError, match="needs --root"):
        data_overrides("affwild2", None)
    with pytest.raises(SuiteError, match="--root needs --data"):
        data_overrides(None, "/x")


@pytest.mark.parametrize(("text", "message"), [
    ("configs: [missing.yaml]", r"s\.yaml: configs: 'missing.yaml' matches no file"),
    ("config: [a.yaml]", "unknown key 'config'"),
    ("configs: [a.yaml]\nseeds: [0, 0]", r"s\.yaml: seeds: expected a non-empty list of distinct integers"),
    ("configs: [a.yaml]\nbootstrap: {draws: 0}", r"s\.yaml: bootstrap.draws: expected an integer >= 1"),
    ("configs: [a.yaml]\nbootstrap: {samples: 10}", "bootstrap: unknown key 'samples'; accepted: draws, seed"),
])
def test_suite_file_errors_name_the_file(tmp_path, text, message):
    (tmp_path / "a.yaml").write_text("name: a\n")
    bad = tmp_path / "s.yaml"
    bad.write_text(f"name: s\n{text}\n")
    with pytest.raises(SuiteError, match=message):
        load_suite(bad)
