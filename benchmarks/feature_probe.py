"""Linear probes on a finished suite's cached features: how much of a row's score the per-frame features carry.

For every run folder ``<task>/<row>/fold<K>`` of the rows asked for, the probe reads the same cached stage-2
features the row trained on, fits one linear model per frame on the row's stage-3 training frames (ridge
regression for continuous labels, logistic regression for classes and for each binary label), picks its
regularisation on the row's selection split, and scores the validation frames with the task's own metric. Set
beside the row's score and the label-only reference, it says whether the features carry the cues (a probe far
below the row: the temporal model adds; a probe near it: the features do the work; a probe near the reference:
the cues are not in the features).

    python benchmarks/feature_probe.py runs/suites/synthaffect --out docs/results/feature-probe

writes ``<out>.json`` (every figure, the suite file and the runs' config digests) and ``<out>.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

import affbench
from affbench import task_contract as contract
from affbench.core.config import config_digest, load_config
from affbench.stages.extract import extract_features, video_features
from affbench.stages.pipeline import stage3_records
from affbench.stages.stage_inputs import load_stage_inputs

STRENGTHS = (0.01, 0.1, 1.0)  # inverse regularisation tried on the selection split (ridge: alpha = 1 / C)


def frame_table(features, records, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, D], labels [N, L]) of the valid frames with a face of `records`."""
    xs, ys = [], []
    for record in records:
        rows, mask = video_features(features, record, policy)
        keep = mask & np.asarray(record.valid, dtype=bool)
        xs.append(rows[keep])
        ys.append(np.asarray(record.labels)[keep])
    return np.concatenate(xs), np.concatenate(ys)


def fit_predict(kind: str, strength: float, x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """Per-frame predictions in the task's label layout from a linear model fitted on (x, y)."""
    if kind == "continuous":
        return np.clip(Ridge(alpha=1.0 / strength).fit(x, y).predict(x_new), -1.0, 1.0)
    if kind == "classes":
        model = LogisticRegression(C=strength, max_iter=500).fit(x, y[:, 0].astype(int))
        return model.predict(x_new)[:, None]
    out = np.zeros((len(x_new), y.shape[1]))
    for j in range(y.shape[1]):
        if y[:, j].min() != y[:, j].max():
            out[:, j] = LogisticRegression(C=strength, max_iter=500).fit(x, y[:, j]).predict(x_new)
        else:
            out[:, j] = y[0, j]
    return out


def probe_run(run_dir: Path) -> dict:
    """The probe's score of one run folder next to the run's own."""
    config = load_config(run_dir / "config.resolved.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fold = metrics["fold"]
    inputs = load_stage_inputs(config, fold)
    features = extract_features(config, fold=fold, quiet=True, inputs=inputs)  # a cache hit: nothing runs
    splits = stage3_records(config, inputs)
    policy = config["data"]["missing_faces"]
    tables = {name: frame_table(features, records, policy) for name, records in splits.items()}
    task = affbench.create("task", config["task"]["name"], **config["task"]["options"])
    primary = metrics["primary_metric"]
    mean, std = tables["train"][0].mean(0), tables["train"][0].std(0) + 1e-6
    x = {name: (t[0] - mean) / std for name, t in tables.items()}
    y = {name: t[1] for name, t in tables.items()}
    kind = contract.output_kind(task)  # continuous, classes or multilabel, as the task declares
    picked = STRENGTHS[0]
    if "selection" in x:
        scores = [task.metrics(fit_predict(kind, c, x["train"], y["train"], x["selection"]), y["selection"])[primary]
                  for c in STRENGTHS]
        picked = STRENGTHS[int(np.argmax(scores))]
    pred = fit_predict(kind, picked, x["train"], y["train"], x["validation"])
    return {"task": config["task"]["name"], "row": config["name"], "fold": fold, "metric": primary,
            "probe": float(task.metrics(pred, y["validation"])[primary]), "row_score": metrics["metrics"][primary],
            "strength": picked, "frames": {name: int(len(t[1])) for name, t in tables.items()},
            "config_digest": config_digest(config)}


def markdown(results: list[dict]) -> str:
    lines = ["| task | row | metric | linear probe on its features | the row | fold |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['row']} | {r['metric']} | {r['probe']:.3f} | {r['row_score']:.3f} | {r['fold']} |"
              for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a finished suite's output folder (its <task>/<row>/fold<K>)")
    parser.add_argument("--rows", nargs="+", default=["ours", "wo_finetune"])
    parser.add_argument("--out", type=Path, default=Path("docs/results/feature-probe"))
    args = parser.parse_args(argv)
    run_dirs = sorted(p.parent for p in args.runs.glob("*/*/fold*/metrics.json") if p.parent.parent.name in args.rows)
    if not run_dirs:
        print(f"{args.runs}: no run folder of rows {', '.join(args.rows)} (<task>/<row>/fold<K>/metrics.json)",
              file=sys.stderr)
        return 2
    results = [probe_run(d) for d in run_dirs]
    suite = json.loads((args.runs / "suite.json").read_text()) if (args.runs / "suite.json").is_file() else {}
    payload = {"affbench_version": affbench.__version__, "suite_file": suite.get("suite_file"),
               "started": suite.get("started"), "probes": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
