"""A task from an installed package runs like a built-in: examples/affbench-valence-sign, installed the way pip
lays a package out, derives its labels from the VA annotations and brings its own metric through train,
evaluate, predict, a suite and its report. Datasets say which annotation sets they have; a task reads one."""

from __future__ import annotations

import csv
import json
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from plugin_install import install_package
from sklearn.metrics import balanced_accuracy_score
from stage_fixtures import ensure_tiny_plugin, tiny_config

import affbench
from affbench.cli import main
from affbench.core import registry as registry_module
from affbench.core.config import to_yaml
from affbench.data.records import VideoRecord
from affbench.stages.evaluate import frame_values, moving_average
from affbench.stages.stage_inputs import load_stage_inputs

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "affbench-valence-sign"


@pytest.fixture
def valence_sign(tmp_path, monkeypatch):
    """The example package installed into a site folder on sys.path, found through its entry point."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    files = {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.glob("affbench_valence_sign/*.py")}
    monkeypatch.syspath_prepend(str(install_package(tmp_path / "site", project, files)))
    registry_module.reset_registry()
    ensure_tiny_plugin()
    yield
    sys.modules.pop("affbench_valence_sign", None)
    registry_module.reset_registry()


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _va_records(synth_root, videos):
    dataset = affbench.create("dataset", "synthaffect", size="tiny", seed=0, root=str(synth_root), quiet=True)
    records = {r.video: r for split in ("train", "validation") for r in dataset.videos("va", split)}
    return {v: records[v] for v in videos}


def test_the_package_registers_its_task_and_metric_through_its_entry_point(valence_sign):
    (task,) = affbench.list_components("task", pattern="valence_sign")
    (metric,) = affbench.list_components("metric", pattern="balanced_accuracy")
    assert task.version == metric.version == "1.0.0" and task.plugin == metric.plugin
    metric = affbench.create("metric", "balanced_accuracy")
    pred, target = np.array([0, 0, 0, 1, 1, 0]), np.array([0, 0, 1, 1, 1, 1])
    assert metric(pred, target) == pytest.approx(balanced_accuracy_score(target, pred))


def test_its_post_processing_smooths_the_class_probabilities(valence_sign):
    task = affbench.create("task", "valence_sign")
    raw = np.zeros((9, 2), np.float32)
    raw[:, 1] = [-1, -1, 2, -1, -1, 2, 2, -2, 3]  # positive logit against a zero negative one
    assert frame_values(task, raw, smoothing=None)[:, 0].tolist() == [0, 0, 1, 0, 0, 1, 1, 0, 1]
    assert frame_values(task, raw, smoothing=3)[:, 0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_the_task_reads_the_va_set_derives_its_labels_and_shares_its_folds(valence_sign, home, synth_root):
    config = tiny_config(synth_root, task="valence_sign")
    sign, va = load_stage_inputs(config, 0), load_stage_inputs(config, 0, task="va")
    assert [r.video for r in sign.train] == [r.video for r in va.train]
    assert [r.video for r in sign.validation] == [r.video for r in va.validation]
    for derived, read in zip(sign.records, va.records, strict=True):
        assert derived.images == read.images and np.array_equal(derived.valid, read.valid)
        assert derived.labels.shape == (read.n_frames, 1)
        expected = np.where(read.valid, read.labels[:, 0] > 0, -1)
        assert np.array_equal(derived.labels[:, 0], expected)
    assert {0.0, 1.0} <= set(np.unique(np.concatenate([r.labels[r.valid, 0] for r in sign.records])))


def test_run_evaluate_predict_and_a_suite_treat_it_as_a_built_in(valence_sign, home, synth_root, tmp_path, capsys):
    config = tmp_path / "valence_sign.yaml"
    config.write_text(to_yaml(tiny_config(synth_root, task="valence_sign", eval={"smoothing": 3})))
    runs = tmp_path / "runs"
    assert main(["--quiet", "train", str(config), "--fold", "0", "--out", str(runs)]) == 0
    run_dir = runs / "valence_sign" / "ours" / "fold0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["primary_metric"] == "balanced_accuracy"
    scored = json.loads((run_dir / "metrics.json").read_text())["metrics"]

    # Scored on the derived labels of every valid frame, by its own metric and the registered one.
    rows = _read_csv(run_dir / "predictions.validation.csv")
    assert list(rows[0]) == ["video", "frame", "face", "valence_sign", "p_negative", "p_positive", "valid",
                             "true_valence_sign"]
    valid = [r for r in rows if r["valid"] == "1"]
    pred, true = [int(r["valence_sign"]) for r in valid], [int(r["true_valence_sign"]) for r in valid]
    assert scored["frames"] == len(valid)
    assert scored["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, pred))
    assert scored["accuracy"] == pytest.approx(np.mean(np.equal(pred, true)))
    records = _va_records(synth_root, {r["video"] for r in rows})
    for r in valid:
        assert int(r["true_valence_sign"]) == int(records[r["video"]].labels[int(r["frame"]) - 1, 0] > 0)

    capsys.readouterr()
    assert main(["--quiet", "evaluate", str(run_dir), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["task"] == "valence_sign" and evaluated["smoothing"] == 3
    assert evaluated["metrics"]["balanced_accuracy"] == pytest.approx(scored["balanced_accuracy"])

    # The submission: its own file and column, integers, post-processed by its smoothing of the probabilities.
    out = tmp_path / "predicted"
    assert main(["--quiet", "predict", str(run_dir), "--out", str(out), "--smoothing", "9"]) == 0
    submission = (out / "valence_sign_submission.txt").read_text().splitlines()
    assert submission[0] == "image_location,valence_sign"
    predicted = _read_csv(out / "predictions.validation.csv")
    assert len(submission) == 1 + len(predicted)
    by_video: dict[str, list[dict]] = {}
    for r in predicted:
        by_video.setdefault(r["video"], []).append(r)
    expected = []
    for video in sorted(by_video):
        prob = np.array([[float(r["p_negative"]), float(r["p_positive"])] for r in by_video[video]])
        smoothed = moving_average(prob, 9).argmax(axis=1)
        expected += [f"{video}/{i + 1:05d}.jpg,{c}" for i, c in enumerate(smoothed)]
    assert submission[1:] == expected

    # A one-row suite: the report's tables carry its columns and its metric, the plots its confusion matrix.
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: sign\nfolds: [0]\nconfigs: [{config.name}]\n")
    report_dir = tmp_path / "suite"
    assert main(["--quiet", "suite", str(suite), "--out", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["table2"]["header"] == ["Method", "Valence sign"]
    assert [r["metric"] for r in report["table1"]["rows"]] == ["Valence sign bal. acc.", "Valence sign acc."]
    suite_metrics = json.loads((report_dir / "valence_sign" / "ours" / "fold0" / "metrics.json").read_text())
    values = {r["metric"]: r for r in _read_csv(report_dir / "report.csv")
              if r["kind"] == "run" and r["task"] == "valence_sign"}
    assert float(values["balanced_accuracy"]["value"]) == pytest.approx(suite_metrics["metrics"]["balanced_accuracy"])
    assert values["balanced_accuracy"]["ci_low"] != ""  # rescored per video: it gets a bootstrap interval
    assert "| Method | Valence sign |" in (report_dir / "report.md").read_text()
    assert (report_dir / "plots" / "valence_sign_confusion.png").stat().st_size > 0


class MoodDataset:
    """A third-party dataset with an annotation set of its own, 'mood' (one class per frame)."""

    name = "moods"

    def __init__(self, *, root: str = ".") -> None:
        self.image_root = Path(root)

    def tasks(self):
        return ["mood"]

    def videos(self, annotation_set, split):
        assert annotation_set == "mood", annotation_set
        rng = np.random.default_rng(0 if split == "train" else 1)
        return [VideoRecord(f"{split}{i}", f"{split}{i}", [f"{split}{i}/{f:05d}.jpg" for f in range(1, 11)],
                            rng.integers(0, 3, (10, 1)).astype(np.float32), np.ones(10, bool)) for i in range(3)]

    def provenance(self):
        return {"name": self.name}


class MoodTask(torch.nn.Module):
    """The task of that dataset: it names no annotation set, so it reads the set named like itself."""

    name = "mood"
    label_names = ("low", "mid", "high")
    out_dim, label_dim = 3, 1


class ValenceFromMoodsTask(MoodTask):
    name = "valence_from_moods"
    annotation = "va"


@pytest.fixture
def mood_plugin():
    module = types.ModuleType("moods_plugin")
    module.affbench_register_datasets = affbench.hookimpl(lambda register: register("moods", MoodDataset))
    module.affbench_register_tasks = affbench.hookimpl(
        lambda register: (register("mood", MoodTask), register("valence_from_moods", ValenceFromMoodsTask)))
    registry_module.reset_registry()
    affbench.get_registry().register_plugin(module, name="moods-plugin", version="0.1")
    yield
    registry_module.reset_registry()


def _mood_config(task):
    # The stages read a loaded config: components already in their {name, options} form.
    return {"task": {"name": task, "options": {}},
            "data": {"dataset": {"name": "moods", "options": {}}, "folds": 2, "fold_seed": 0}}


def test_a_third_party_dataset_brings_its_own_task(mood_plugin):
    inputs = load_stage_inputs(_mood_config("mood"), None)
    assert [r.video for r in inputs.train] == ["train0", "train1", "train2"]
    assert inputs.validation[0].labels.shape == (10, 1)
    folded = load_stage_inputs(_mood_config("mood"), 1)
    assert folded.fold_info["split_over_tasks"] == ["mood"] and folded.validation


def test_a_task_reading_a_set_the_dataset_lacks_is_refused_naming_the_sets_it_has(mood_plugin):
    with pytest.raises(ValueError, match=r"^dataset 'moods' has no annotation set 'va' \(task 'valence_from_moods' "
                                         r"reads it\); it has: mood$"):
        load_stage_inputs(_mood_config("valence_from_moods"), None)
