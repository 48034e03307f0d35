"""Numbers in the README come from a file a suite wrote: the block is its rendering, its digests are today's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affbench.cli import main
from affbench.core.config import config_digest
from affbench.published_results import (
    BEGIN,
    END,
    FORMAT,
    FORMAT_VERSION,
    PublishError,
    current_block,
    read_results,
    render_block,
    replace_block,
)
from affbench.suite import plan_runs, resolve_suite

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PUBLISHED = REPO / "docs" / "results" / "paper-synthaffect.json"


def _results(**changes) -> dict:
    base = {
        "format": FORMAT, "version": FORMAT_VERSION, "affbench_version": "9.9", "suite": "demo",
        "suite_file": "synthaffect/suite.yaml", "folds": [0],
        "datasets": [{"name": "synthaffect", "size": "small", "seed": 0, "generator_version": "1.1"}],
        "configs": [{"task": "va", "row": "ours", "config_file": "synthaffect/va/ours.yaml", "digest": "ab" * 32}],
        "runs": {"total": 1, "trained": 1},
        "machine": {"cpu": "Some CPU", "cores": 2, "gpu": None, "system": "Linux 6", "python": "3.11",
                    "torch": "2.14.1"},
        "started": "2026-12-01T10:00:00", "wall_seconds": 125.4,
        "tables_markdown": "| Method | VA |\n|---|---|\n| ours | 0.41 [0.30, 0.50] |",
    }
    return {**base, **changes}


def test_publish_copies_the_file_and_rewrites_only_the_block(tmp_path):
    results = tmp_path / "out" / "results.json"
    results.parent.mkdir()
    results.write_text(json.dumps(_results()))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{BEGIN}\nold numbers\n{END}\nafter\n")
    to = tmp_path / "docs" / "results" / "demo.json"
    assert main(["publish", str(results.parent), "--to", str(to), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith("after\n") and "old numbers" not in text
    block = current_block(text)
    assert block == render_block(read_results(to), "docs/results/demo.json")
    assert "**2 min 05 s**" in block and "2-core CPU (Some CPU), no GPU" in block and "0.41 [0.30, 0.50]" in block
    assert "generator_version 1.1" in block and "abababababab" in block


@pytest.mark.parametrize(("text", "message"), [
    ("no markers here\n", "found 0"),
    (f"{BEGIN}\na\n{END}\n{BEGIN}\nb\n{END}\n", "found 2"),
])
def test_a_readme_without_exactly_one_block_is_refused(text, message):
    with pytest.raises(PublishError, match=message):
        replace_block(text, "new")


def test_publish_errors_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text('{"format": "something else"}')
    readme = tmp_path / "README.md"
    readme.write_text("no block\n")
    assert main(["publish", str(bad), "--to", str(tmp_path / "x.json"), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an affbench results file" in err
    assert not (tmp_path / "x.json").exists()
    bad.write_text(json.dumps(_results()))
    assert main(["publish", str(bad), "--to", str(tmp_path / "x.json"), "--readme", str(readme)]) == 2
    assert "expected one results block" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists() and readme.read_text() == "no block\n"


def test_readme_results_block_is_the_rendering_of_the_committed_results_file():
    results = read_results(PUBLISHED)
    block = current_block(README.read_text(encoding="utf-8"))
    assert block is not None, "README.md has no results block"
    assert block == render_block(results, "docs/results/paper-synthaffect.json"), (
        "README's results block differs from docs/results/paper-synthaffect.json: run `affbench suite paper` and "
        "`affbench publish runs/suites/synthaffect`")


def test_committed_results_were_made_by_todays_builtin_configs():
    from affbench_plugins.datasets.synthaffect import GENERATOR_VERSION

    results = read_results(PUBLISHED)
    planned = plan_runs(resolve_suite("paper"))
    today = {(c["task"]["name"], c["name"]): config_digest(c) for c, _fold, _seed in planned}
    recorded = {(c["task"], c["row"]): c["digest"] for c in results["configs"]}
    assert recorded == today, ("the built-in paper suite's configs changed since the README's results were "
                               "made: run `affbench suite paper` and `affbench publish runs/suites/synthaffect`")
    assert [d["generator_version"] for d in results["datasets"]] == [GENERATOR_VERSION]


def test_a_second_run_on_an_empty_cache_printed_the_same_tables():
    """The README says the main job reproduces itself: the committed second run (same configs, its own empty
    cache) holds the very tables of the published one."""
    first = read_results(PUBLISHED)
    second = read_results(PUBLISHED.with_name("paper-synthaffect-second-run.json"))
    assert second["configs"] == first["configs"] and second["started"] != first["started"]
    assert second["tables_markdown"] == first["tables_markdown"]
