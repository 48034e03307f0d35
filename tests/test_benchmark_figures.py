"""The README's extraction and compile figures are those of the files the benchmarks wrote, committed
under docs/benchmarks: a hand edit of a number, or a new file without its figure, fails here."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from affbench.bench_report import find, load_results, ratio

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
FILES = REPO / "docs" / "benchmarks"


def _series(values: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def _ratios(pattern: str, name: str, baseline: str) -> list[float]:
    paths = sorted(FILES.glob(pattern))
    assert len(paths) >= 3, f"docs/benchmarks/{pattern}: a figure on this machine needs at least three runs"
    return [ratio(load_results(path)[0], name, baseline) for path in paths]


def test_the_small_backbone_extraction_row_is_the_committed_runs():
    name, baseline = "extraction[clip_small]", "baseline_forward_only[clip_small]"
    before = _ratios("extraction-small-before-*.json", name, baseline)
    after = _ratios("extraction-small-after-*.json", name, baseline)
    row = (f"| extraction, CLIP test config (32 px) vs forward only | before {_series(before)}×; "
           f"after {_series(after)}× (")
    assert row in README
    # The whole-shard reads against the per-sample reads of decoded crops, measured in interleaved runs.
    per_sample = _ratios("extraction-small-crops-*.json", name, baseline)
    whole = _ratios("extraction-small-whole-shard-*.json", name, baseline)
    assert (f"crops read per sample {_series(per_sample)}×, a whole shard at a time {_series(whole)}× (" in
            README.split("| extraction, CLIP test config (32 px) vs forward only |")[1].split("\n")[0])


def test_the_compile_row_is_the_committed_runs():
    paths = sorted(FILES.glob("compile-*.json"))
    assert paths
    results = [load_results(path)[0] for path in paths]
    ratios = [ratio(r, "compiled_forward[clip_small]", "baseline_eager_forward[clip_small]") for r in results]
    compiled = [find(r, "compiled_forward[clip_small]").extra for r in results]
    row = (f"| `torch.compile` vs eager, CLIP test config (32 px), batch 32 | {_series(ratios)}× "
           f"(compiled in {_series([c['compile_seconds'] for c in compiled], '{:.0f}')} s; largest feature "
           f"difference {max(c['max_abs_diff'] for c in compiled):.1e}) |")
    assert row in README


def test_the_stage12_sharing_table_is_the_committed_measurement():
    """The README's before/after table of stages 1-2 is what benchmarks/stage12_sharing.py wrote, and that file's
    totals are the sums of its rows."""
    import json

    record = json.loads((REPO / "docs" / "results" / "stage12-sharing.json").read_text(encoding="utf-8"))
    for mode in record["modes"].values():
        assert abs(mode["seconds"] - sum(r["seconds"] for r in mode["rows"])) < 0.05
    readme = " ".join(README.split())
    table = (REPO / "docs" / "results" / "stage12-sharing.md").read_text(encoding="utf-8")
    for line in table.splitlines():
        assert " ".join(line.split()) in readme, f"README lacks the line {line!r} of stage12-sharing.md"


def test_the_demo_stage3_choice_follows_its_recorded_rule():
    """The demo's stage-3 learning rate is the one candidate of docs/results/demo-stage3.json that passed the rule
    recorded there (mean gain >= 0.02 over the development cells, none down by more than 0.05), and the README
    quotes that file's figure."""
    record = json.loads((REPO / "docs" / "results" / "demo-stage3.json").read_text(encoding="utf-8"))
    assert record["rule"] and record["against"] in record["suites"]
    passed = {label: d for label, d in record["differences"].items() if d["mean"] >= 0.02 and d["min"] >= -0.05}
    assert list(passed) == ["C2 stage-3 lr 3e-3 (adopted)"]
    adopted = record["suites"]["C2 stage-3 lr 3e-3 (adopted)"]["overrides"]
    scale = yaml.safe_load((REPO / "configs" / "synthaffect" / "scale.yaml").read_text(encoding="utf-8"))
    assert scale["train"]["lr"] == adopted["train.lr"]
    mean = passed["C2 stage-3 lr 3e-3 (adopted)"]["mean"]
    assert f"learning rate of 3e-3 passed (mean {mean:+.3f})" in README
