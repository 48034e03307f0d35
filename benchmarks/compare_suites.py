"""Two or more finished suites side by side, per fold: each row's primary score with its interval, and the
label-only references of the same frames.

The demo's levers were chosen this way, on folds the README's table does not report (development folds), each
suite run with one change through its ``overrides``:

    python benchmarks/compare_suites.py before=runs/e0 after=runs/e1 --out docs/results/demo-stage1-augment

writes ``<out>.json`` (every value, each suite's overrides and config digests) and ``<out>.md`` (the table).
``--against LABEL`` adds each suite's mean and smallest difference from that one over the cells both have, and
``--rule TEXT`` keeps the adoption rule, as written before the suites ran, beside the figures it decided on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from affbench.output import markdown_table, write_json, write_text_atomic
from affbench.published_results import config_digests

REFERENCE = "constant"  # Table 2's first label-only row: training mean, best constant class, every AU on


def read_suite(directory: Path) -> dict:
    """One suite output folder: its report's values and references, its overrides and config digests."""
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    suite = json.loads((directory / "suite.json").read_text(encoding="utf-8"))
    # Each task's primary metric as its runs declared it (metrics.json), the figure Table 2 shows.
    # A run folder is <suite folder>/<task>/<row>/fold<K> wherever the suite ran from (run_dir may be relative).
    primary = {r["task"]: json.loads((directory.joinpath(*Path(r["run_dir"]).parts[-3:]) / "metrics.json")
                                     .read_text(encoding="utf-8"))["primary_metric"]
               for r in report["runs"]}
    values = {(v["task"], v["row"], v["fold"]): v for v in report["values"] if primary.get(v["task"]) == v["metric"]}
    references = {(r["task"], r["fold"]): r for r in report["references"] if r["reference"] == REFERENCE}
    return {"folder": str(directory), "suite": suite["suite"], "overrides": suite.get("overrides") or {},
            "primary": primary,
            "configs": config_digests(suite["runs"]), "values": values, "references": references}


def cell(value: dict | None) -> str:
    if value is None:
        return "—"
    low, high = (round(value[k], 2) + 0.0 for k in ("low", "high"))  # + 0.0: never print -0.00
    return f"{round(value['value'], 3) + 0.0:.3f} [{low:.2f}, {high:.2f}]"


def differences(suites: dict, against: str) -> dict[str, dict]:
    """Each other suite's mean and smallest (candidate - `against`) primary score over the cells both have."""
    base = suites[against]["values"]
    out = {}
    for label, suite in suites.items():
        deltas = [v["value"] - base[k]["value"] for k, v in suite["values"].items() if k in base]
        if label != against and deltas:
            out[label] = {"cells": len(deltas), "mean": sum(deltas) / len(deltas), "min": min(deltas)}
    return out


def summary_text(summary: dict, against: str | None) -> str:
    if not summary:
        return ""
    lines = [f"- {label}: mean {d['mean']:+.4f}, smallest {d['min']:+.4f} over {d['cells']} cells"
             for label, d in summary.items()]
    return f"\n\nDifference from {against!r} (candidate - {against}):\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="+", metavar="LABEL=DIR", help="a label and a suite's output folder")
    parser.add_argument("--out", required=True, help="output path without extension (.json and .md are written)")
    parser.add_argument("--against", default=None, metavar="LABEL",
                        help="also give each suite's mean and smallest difference from this one, over the cells both have")
    parser.add_argument("--rule", default=None,
                        help="the adoption rule, as written before the suites ran: printed above the table and kept")
    args = parser.parse_args(argv)
    suites = {}
    for spec in args.suites:
        label, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "report.json").is_file():
            print(f"compare_suites: {spec!r}: expected LABEL=DIR where DIR holds a suite's report.json",
                  file=sys.stderr)
            return 2
        suites[label] = read_suite(Path(folder))
    if args.against is not None and args.against not in suites:
        print(f"compare_suites: --against {args.against!r}: not one of the labels {', '.join(suites)}", file=sys.stderr)
        return 2
    keys = {k for s in suites.values() for k in s["values"]}
    tasks = list(dict.fromkeys(k[0] for s in suites.values() for k in s["values"]))  # the report's task order
    keys = sorted(keys, key=lambda k: (k[2], tasks.index(k[0]), k[1]))  # fold, task, row
    rows = []
    for task, row, fold in keys:
        reference = next((s["references"].get((task, fold)) for s in suites.values()
                          if (task, fold) in s["references"]), None)
        rows.append([fold, task, row, cell(reference)] + [cell(s["values"].get((task, row, fold))) for s in suites.values()])
    header = ["fold", "task", "row", f"ref: {REFERENCE}"] + [f"{label}" for label in suites]
    overrides = "; ".join(f"{label}: {s['overrides'] or 'none'}" for label, s in suites.items())
    primary = {task: metric for s in suites.values() for task, metric in s["primary"].items()}
    rule = f"Rule, written before the runs: {args.rule}\n\n" if args.rule else ""
    summary = differences(suites, args.against) if args.against else {}
    table = (rule + markdown_table(header, rows) + summary_text(summary, args.against) + f"\n\nOverrides: {overrides}. Values: each task's primary metric ("
             + ", ".join(f"{task} {metric}" for task, metric in primary.items())
             + "), each with its 95 % interval (cluster bootstrap over validation videos).\n")
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {
        "rule": args.rule, "against": args.against, "differences": summary,
        "suites": {label: {**{k: s[k] for k in ("folder", "suite", "overrides", "configs")},
                           "values": list(s["values"].values()), "references": list(s["references"].values())}
                   for label, s in suites.items()}})
    write_text_atomic(out.with_suffix(".md"), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
