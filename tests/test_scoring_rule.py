"""eval.scoring: windows counts the frames of full windows (tails dropped, overlaps as often as windows hold them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from trainer_fixtures import tiny_config, write_tiny_data

import affbench
from affbench.cli import main
from affbench.core.config import ConfigError, load_config
from affbench.data.window_shards import WindowShards
from affbench.data.windows import window_counts
from affbench.frame_stats import read_predictions
from affbench.report import build_tables, legend, reading_guide
from affbench.report_numbers import SCORED_ON_WINDOWS, ReportNumbers, row_label
from affbench.scoring_rule import ScoringRule
from affbench.stages.cli import _print as print_result
from affbench.stages.evaluate import VideoOutputs, evaluate, frame_values, score
from affbench.stages.trainer import train


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mx, my = x.mean(), y.mean()
    return float(2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2))


def _authors_loop(n: int, window: int, stride: int) -> list[int]:
    """The frames the authors' loop scores, written as their loop: start at 0, step by stride, stop before a
    window would pass the end; every frame of every window, repeats kept."""
    frames, start = [], 0
    while start + window <= n:
        frames += list(range(start, start + window))
        start += stride
    return frames


def test_window_counts_drop_tails_and_count_overlaps():
    np.testing.assert_array_equal(window_counts(11, 4, 3), [1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 0])
    np.testing.assert_array_equal(window_counts(3, 4, 3), [0, 0, 0])  # shorter than a window: never scored
    np.testing.assert_array_equal(window_counts(8, 4, 4), [1] * 8)  # no overlap, no tail
    for n in (4, 9, 30):
        assert np.bincount(_authors_loop(n, 5, 2), minlength=n).tolist() == window_counts(n, 5, 2).tolist()


def test_windowed_score_equals_hand_computation():
    """Video a (11 frames): w=4, s=3 -> windows at 0, 3, 6; frames 3 and 6 twice, frame 10 (the tail) never,
    frame 3 has no valid label. Video b (3 frames) is shorter than a window: ignored. Video c (7 frames):
    windows at 0, 3; frame 3 twice."""
    task = affbench.create("task", "va")
    rng = np.random.default_rng(4)
    lengths = {"a": 11, "b": 3, "c": 7}
    outputs = VideoOutputs(
        outputs={v: rng.normal(size=(n, 2)).astype(np.float32) for v, n in lengths.items()},
        labels={v: rng.uniform(-1, 1, size=(n, 2)).astype(np.float32) for v, n in lengths.items()},
        valid={v: np.ones(n, bool) for v, n in lengths.items()})
    outputs.valid["a"][3] = False
    rule = ScoringRule("windows", 4, 3)
    metrics, values = score(task, outputs, rule=rule)

    hand = {"a": [0, 1, 2, 4, 5, 6, 6, 7, 8, 9], "b": [], "c": [0, 1, 2, 3, 3, 4, 5, 6]}
    pred = np.concatenate([frame_values(task, outputs.outputs[v])[hand[v]] for v in lengths])
    true = np.concatenate([outputs.labels[v][hand[v]] for v in lengths])
    assert metrics["frames"] == 18
    assert metrics["valence"] == pytest.approx(_ccc(pred[:, 0], true[:, 0]), abs=1e-9)
    assert metrics["arousal"] == pytest.approx(_ccc(pred[:, 1], true[:, 1]), abs=1e-9)
    assert metrics["mean"] == pytest.approx((metrics["valence"] + metrics["arousal"]) / 2)
    # The values (files) stay one row per frame, every frame of every video, whatever the rule.
    assert {v: len(x) for v, x in values.items()} == lengths
    # Every frame once is a different number on the same outputs.
    frames_metrics, _ = score(task, outputs)
    assert frames_metrics["frames"] == 20 and frames_metrics["mean"] != pytest.approx(metrics["mean"])


def test_no_full_window_is_an_error_naming_the_rule():
    task = affbench.create("task", "va")
    outputs = VideoOutputs(outputs={"b": np.zeros((3, 2), np.float32)}, labels={"b": np.zeros((3, 2), np.float32)},
                           valid={"b": np.ones(3, bool)})
    with pytest.raises(ValueError, match="full windows of 4 frames"):
        score(task, outputs, rule=ScoringRule("windows", 4, 3))


def _windowed_from_csv(run_dir: Path, task, window: int, stride: int) -> dict[str, float]:
    """The task's metrics recomputed from the run's predictions.validation.csv by the authors' loop."""
    columns = task.label_names
    pred, true = [], []
    for cols in read_predictions(run_dir).values():
        n = len(cols["valid"])
        idx = [i for i in _authors_loop(n, window, stride) if cols["valid"][i] == 1]
        pred.append(np.stack([cols[c] for c in columns], axis=1)[idx])
        true.append(np.stack([cols[f"true_{c}"] for c in columns], axis=1)[idx])
    return task.metrics(np.concatenate(pred), np.concatenate(true))


@pytest.mark.parametrize("select", ["inner", "validation"])
def test_training_on_windows_reports_the_windowed_score(tmp_path, capsys, select):
    data = write_tiny_data(tmp_path / "data", "va")
    config = tiny_config("va", epochs=2, select=select)
    config["eval"]["scoring"] = "windows"
    result = train(config, fold=0, out_dir=tmp_path / "runs", data=data, quiet=True)
    run_dir = Path(result["run_dir"])
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert recorded["scoring"] == {"rule": "windows", "window": 16, "stride": 10}
    task = affbench.create("task", "va")
    expected = _windowed_from_csv(run_dir, task, 16, 10)
    for key in ("valence", "arousal", "mean"):
        # The CSV holds values to 6 decimals.
        assert recorded["metrics"][key] == pytest.approx(expected[key], abs=1e-4)
    # Validation videos of 37, 12 and 29 frames: windows at 0, 10, 20 / none / 0, 10; the csv keeps every frame.
    rows = {v: len(c["valid"]) for v, c in read_predictions(run_dir).items()}
    assert sorted(rows.values()) == [12, 29, 37]
    valid = {v: c["valid"] == 1 for v, c in read_predictions(run_dir).items()}
    assert recorded["metrics"]["frames"] == sum(int((window_counts(len(m), 16, 10) * m).sum())
                                                for m in valid.values())
    # The epoch was picked on the windowed score of the split train.select scores.
    pick = data.selection_dir if select == "inner" else data.validation_dir
    labelled = {}
    for w in WindowShards(pick).iter_windows():
        mask = labelled.setdefault(w["video"], np.zeros(int(w["n_frames"]), bool))
        real = w["frames"] > 0
        mask[w["frames"][real] - 1] = w["valid"][real]
    assert recorded["selection"]["metrics"]["frames"] == sum(int((window_counts(len(m), 16, 10) * m).sum())
                                                             for m in labelled.values())
    # evaluate() of the reported checkpoint scores by the run's rule too.
    ev = evaluate(run_dir / "best.pt", data=data, quiet=True)
    assert ev["scoring"] == recorded["scoring"] and ev["metrics"] == pytest.approx(recorded["metrics"])
    print_result(ev, False)
    assert "frame scores on windows of 16 every 10 (eval.scoring: windows)" in capsys.readouterr().out

    # The report rescores the run by the same rule (no disagreement note) and marks the row.
    run = {"name": "tiny_va", "task": "va", "fold": 0, "seed": 0, "run_dir": str(run_dir),
           "config": config.to_dict(), "metrics": recorded["metrics"]}
    numbers = ReportNumbers([run], main="tiny_va")
    assert not [n for n in numbers.notes if "rescored" in n]
    assert numbers.cell("tiny_va", "va", "mean").mean == pytest.approx(recorded["metrics"]["mean"], abs=1e-4)
    assert SCORED_ON_WINDOWS in row_label(numbers, "tiny_va")
    assert build_tables([run], numbers=numbers)["table2"]["rows"][0]["scoring"] == ["windows"]
    assert any(line.startswith(f"`{SCORED_ON_WINDOWS}`") for line in legend(numbers))
    frames_run = {**run, "config": {**config.to_dict(), "eval": {**config["eval"], "scoring": "frames"}}}
    frames_numbers = ReportNumbers([frames_run], main="tiny_va")
    assert SCORED_ON_WINDOWS not in row_label(frames_numbers, "tiny_va")
    assert not any(SCORED_ON_WINDOWS in line for line in legend(frames_numbers))
    assert [SCORED_ON_WINDOWS in line for line in reading_guide("tiny_va", [run])].count(True) == 1
    assert not any(SCORED_ON_WINDOWS in line for line in reading_guide("tiny_va", [frames_run]))
    # Rescored every frame once, the run disagrees with its windowed metrics.json, and the report says so.
    assert any("metrics.json says" in n for n in frames_numbers.notes)


def test_bad_scoring_value_fails_at_load_naming_file_line_and_choices(tmp_path, capsys):
    path = tmp_path / "row.yaml"
    path.write_text("task: va\ndata: {dataset: affwild2}\neval:\n  scoring: window\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: eval.scoring: 'window' is not one of frames, windows"):
        load_config(path)
    assert main(["--quiet", "train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:4" in err[0] and "frames, windows" in err[0]


def test_paper_authors_code_configs_score_on_windows():
    for task in ("va", "expr", "au"):
        config = load_config(Path(__file__).parents[1] / "configs" / "paper" / task / "authors_code.yaml")
        assert ScoringRule.of(config) == ScoringRule("windows", config["data"]["window"], config["data"]["stride"])
        ours = load_config(Path(__file__).parents[1] / "configs" / "paper" / task / "ours.yaml")
        assert ScoringRule.of(ours) == ScoringRule()
