"""The multi-task model: one temporal stack, one head per task, masked weighted losses, the sampling rule, and
each task scored on exactly the frames its single-task rows score."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest
import torch
from stage_fixtures import forwards, tiny_config

import affbench
from affbench.data.records import VideoRecord
from affbench.data.window_shards import WindowShards, write_window_shards
from affbench.model import TaskHeads, create_model
from affbench.multitask import SCORE, epoch_repeats, part_specs, per_task_runs
from affbench.stages.evaluate import set_thresholds

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

PARTS = [{"name": "va", "weight": 1.0}, {"name": "expr", "weight": 0.5}, {"name": "au", "weight": 2.0}]


def _task(parts=PARTS):
    return affbench.create("task", "multitask", tasks=parts)


def _record(video: str, labels: np.ndarray) -> VideoRecord:
    n = len(labels)
    return VideoRecord(video, video, [f"{video}/{i + 1:05d}.jpg" for i in range(n)], labels.astype(np.float32),
                       labels[:, -3:].any(axis=1))


def _merged_labels(task, n: int, usable: list[int], seed: int) -> np.ndarray:
    """[n, width] merged labels of a video labelled for the parts listed in `usable`."""
    rng = np.random.default_rng(seed)
    layout = task.layout
    labels = np.zeros((n, layout.width), np.float32)
    for i in usable:
        cols = layout.label_slices[i]
        if layout.label_dims[i] == 1:
            labels[:, cols] = rng.integers(0, 8, (n, 1))
        else:
            labels[:, cols] = rng.integers(0, 2, (n, layout.label_dims[i])) if i == 2 else rng.uniform(-1, 1, (n, 2))
        labels[:, layout.n_label_columns + i] = 1
    return labels


def _model(task_spec, feature_dim=6):
    config = affbench.core.config.resolve({
        "task": task_spec, "backbone": None, "feature_dim": feature_dim,
        "model": {"temporal": [{"name": "tcn", "options": {"channels": [8], "kernel_size": 3, "dropout": 0.0,
                                                             "weight_norm": False}}],
                  "head": {"hidden": 8, "dropout": 0.0}}})
    return create_model(config.to_dict())


def test_one_head_per_task_on_one_temporal_stack():
    model = _model({"name": "multitask", "options": {"tasks": PARTS}})
    assert isinstance(model.head, TaskHeads) and len(model.head.heads) == 3
    assert [h.out_dim for h in model.head.heads] == [2, 8, 12] and model.out_dim == 22
    assert len(model.temporal) == 1  # shared
    out = model(torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool))
    assert out.shape == (2, 5, 22)


def test_changing_labels_a_video_lacks_cannot_change_the_gradient():
    """A video labelled for VA only: whatever its EXPR and AU columns hold, the gradient is the same; its VA
    labels do change it (the check can fail)."""
    torch.manual_seed(0)
    model = _model({"name": "multitask", "options": {"tasks": PARTS}})
    task = model.task
    x, mask = torch.randn(2, 7, 6), torch.ones(2, 7, dtype=torch.bool)
    va_only = _merged_labels(task, 7, [0], seed=1)
    full = _merged_labels(task, 7, [0, 1, 2], seed=2)

    def grads(first: np.ndarray) -> list[torch.Tensor]:
        model.zero_grad()
        labels = torch.from_numpy(np.stack([first, full]))
        task.loss(model(x, mask), labels, mask).backward()
        return [p.grad.clone() for p in model.parameters()]

    base = grads(va_only)
    garbage = va_only.copy()
    layout = task.layout
    for i in (1, 2):  # the columns of the tasks the video lacks (usable stays 0)
        garbage[:, layout.label_slices[i]] = np.random.default_rng(i).uniform(-50, 50, (7, layout.label_dims[i]))
    for a, b in zip(base, grads(garbage), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    changed = va_only.copy()
    changed[:, layout.label_slices[0]] *= -1
    assert any(not torch.equal(a, b) for a, b in zip(base, grads(changed), strict=True))


def test_loss_is_the_weighted_sum_of_each_tasks_masked_loss():
    task = _task()
    torch.manual_seed(0)
    pred = torch.randn(10, task.out_dim)
    labels = torch.from_numpy(np.concatenate([_merged_labels(task, 5, [0, 1], 3), _merged_labels(task, 5, [2], 4)]))
    layout = task.layout
    expected = 0.0
    for i, (part, spec) in enumerate(zip(task.parts, PARTS, strict=True)):
        rows = labels[:, layout.n_label_columns + i] > 0.5
        expected += spec["weight"] * float(part.loss(pred[:, layout.out_slices[i]], labels[:, layout.label_slices[i]],
                                                     rows))
    assert float(task.loss(pred, labels)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("tasks, message", [
    ([{"name": "va"}], "at least two"),
    ([{"name": "va"}, {"name": "va"}], "once"),
    ([{"name": "va", "weight": 0}, {"name": "au"}], "weight"),
    ([{"name": "va", "scale": 2}, {"name": "au"}], "unknown key 'scale'"),
])
def test_bad_task_lists_are_refused_naming_the_key(tasks, message):
    with pytest.raises(ValueError, match=message):
        part_specs(tasks)


def test_metrics_score_each_task_on_its_own_rows_and_sum_the_primaries():
    task = _task()
    labels = np.concatenate([_merged_labels(task, 6, [0, 1], 5), _merged_labels(task, 4, [1, 2], 6)])
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(10, task.out_dim)).astype(np.float32)
    values = task.submission_values(raw, 0)
    got = task.metrics(values, labels)
    layout = task.layout
    total = 0.0
    for i, (name, part) in enumerate(task.named_parts()):
        rows = layout.usable(labels, i)
        own = part.metrics(part.submission_values(raw[rows][:, layout.out_slices[i]], 0),
                           labels[rows][:, layout.label_slices[i]])
        for key, value in own.items():
            assert got[f"{name}/{key}"] == pytest.approx(value)
        assert got[f"{name}/frames"] == rows.sum()
        total += own[part.primary_metric]
    assert got[SCORE] == pytest.approx(total)


def test_thresholds_go_to_the_part_that_tunes():
    task = _task()
    state = np.linspace(0.2, 0.8, 12)
    set_thresholds(task, state)
    np.testing.assert_allclose(task.parts[2].thresholds.numpy(), state, rtol=1e-6)
    np.testing.assert_allclose(task.thresholds, state, rtol=1e-6)


def _videos(task, counts: list[int]) -> list[VideoRecord]:
    records, k = [], 0
    for i, n in enumerate(counts):
        for _ in range(n):
            records.append(_record(f"v{k:03d}", _merged_labels(task, 4, [i], k)))
            k += 1
    return records


def test_sampling_rule_repeats_the_videos_of_the_task_with_fewest():
    task = _task()
    repeats = epoch_repeats(task.layout, _videos(task, [10, 10, 2]))
    assert [repeats[f"v{k:03d}"] for k in (0, 19, 20, 21)] == [1, 1, 5, 5]
    # A video labelled for several tasks takes the largest repeat of its tasks.
    shared = _record("both", _merged_labels(task, 4, [0, 2], 9))
    assert epoch_repeats(task.layout, [*_videos(task, [10, 10, 2]), shared])["both"] == 4  # round(10/3)


@pytest.mark.parametrize("counts", list(itertools.product([1, 3, 7, 20], repeat=3)))
def test_sampling_rule_starves_no_task(counts):
    """Every task fills at least two thirds of the video slots of the task with the most per epoch."""
    task = _task()
    records = _videos(task, list(counts))
    repeats = epoch_repeats(task.layout, records)
    slots = [sum(repeats[r.video] for r in records if task.layout.usable(r.labels, i).any()) for i in range(3)]
    assert min(slots) >= 2 / 3 * max(counts)


def test_repeated_videos_are_written_again_under_their_own_keys(tmp_path):
    task = _task()
    records = _videos(task, [2, 1, 0])
    feats = {r.video: (np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32), np.ones(4, bool))
             for r in records}
    repeats = {"v002": 2}
    passes = [records, [r for r in records if r.video in repeats]]
    manifest = write_window_shards(tmp_path / "w", ((r, *feats[r.video]) for p in passes for r in p), window=2,
                                   stride=2, manifest_extra={}, repeats=repeats, quiet=True)
    windows = list(WindowShards(tmp_path / "w").iter_windows())
    per_video = {v: sum(w["video"] == v for w in windows) for v in ("v000", "v001", "v002")}
    assert per_video == {"v000": 2, "v001": 2, "v002": 4}
    assert len({w["key"] for w in windows}) == len(windows) == manifest["counts"]["windows"]
    assert manifest["counts"]["videos"] == 3 and manifest["counts"]["repeated_videos"] == 1
    with pytest.raises(ValueError, match="given 2 times"):
        write_window_shards(tmp_path / "x", ((r, *feats[r.video]) for r in [records[0], records[0]]), window=2,
                            stride=2, manifest_extra={}, quiet=True)


def test_the_report_reads_a_multitask_run_under_each_task():
    run = {"name": "mtl", "task": "multitask", "fold": 0, "run_dir": "/r/multitask/mtl/fold0",
           "config": {"task": {"name": "multitask", "options": {"tasks": PARTS}}},
           "metrics": {"va/mean": 0.5, "expr/f1": 0.25, "au/f1": 0.125, "au/f1_AU1": 0.1, SCORE: 0.875}}
    single = {"name": "ours", "task": "va", "metrics": {"mean": 0.4}}
    rows = per_task_runs([single, run])
    assert rows[0] == single
    assert [(r["task"], r["metrics"], r["run_dir"]) for r in rows[1:]] == [
        ("va", {"mean": 0.5}, "/r/multitask/mtl/fold0/va"),
        ("expr", {"f1": 0.25}, "/r/multitask/mtl/fold0/expr"),
        ("au", {"f1": 0.125, "f1_AU1": 0.1}, "/r/multitask/mtl/fold0/au")]
    assert all(r["multitask"][SCORE] == 0.875 for r in rows[1:])


def _scored_frames(path) -> dict[str, list[int]]:
    frames: dict[str, list[int]] = {}
    with open(path, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["valid"] == "1":
                frames.setdefault(row["video"], []).append(int(row["frame"]))
    return frames


def test_multitask_row_is_scored_on_each_tasks_own_frames_and_shares_stages_1_2(home, synth_root, tmp_path):
    """The mtl row trains on the fine-tune and features of the single-task rows (no backbone frame runs again),
    and each task's predictions score exactly the frames its single-task run scores."""
    from affbench import task_contract as contract
    from affbench.stages.evaluate import predict
    from affbench.stages.pipeline import prepare_window_shards
    from affbench.stages.stage_inputs import load_stage_inputs, selection_spec
    from affbench.stages.trainer import train

    shared = {"finetune": {"tasks": ["va", "expr", "au"]}, "train": {"select": "inner", "select_fraction": 0.3}}
    singles = {name: tiny_config(synth_root, task=name, **shared) for name in ("va", "expr", "au")}
    for config in singles.values():
        prepare_window_shards(config, fold=0, quiet=True)
    before = forwards()
    mtl = tiny_config(synth_root, name="mtl", task={"name": "multitask", "options": {"tasks": PARTS}}, **shared)
    result = train(mtl, fold=0, out_dir=tmp_path / "runs", quiet=True)
    assert forwards() == before  # stage 1 and stage 2 came from the single-task rows' cache entries
    run_dir = tmp_path / "runs" / "multitask" / "mtl" / "fold0"
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    total = 0.0
    for name, config in singles.items():
        own = load_stage_inputs(config, 0)
        expected = {r.video: [i + 1 for i in np.flatnonzero(r.valid)] for r in own.validation if r.valid.any()}
        assert _scored_frames(run_dir / name / "predictions.validation.csv") == expected
        assert metrics[f"{name}/frames"] == sum(len(f) for f in expected.values())
        total += metrics[f"{name}/{affbench.create('task', name).primary_metric}"]
    assert metrics[SCORE] == pytest.approx(total)
    assert result["primary_metric"] == SCORE and result["selection"]["metrics"][SCORE] is not None
    # The epoch is picked on the tasks' own selection slices, together: videos stage 1 never trained on.
    slices = set().union(*(selection_spec(c, load_stage_inputs(c, 0))["videos"] for c in singles.values()))
    assert set(result["selection"]["videos"]) == slices
    # predict writes each task's predictions and submission as its single-task run would, in its own folder.
    written = predict(run_dir / "best.pt", tmp_path / "pred", quiet=True)["tasks"]
    assert sorted(written) == ["au", "expr", "va"]
    for name in singles:
        task = affbench.create("task", name)
        assert written[name]["submission"] == str(tmp_path / "pred" / name / contract.submission_file(task))
        header = (tmp_path / "pred" / name / contract.submission_file(task)).read_text().splitlines()[0]
        assert header == ",".join(["image_location", *contract.submission_columns(task)])


def test_table_2_adds_the_multitask_score_of_every_row_with_all_tasks():
    from affbench.report import MULTITASK_SCORE, build_tables

    def run(name, task, **metrics):
        return {"name": name, "task": task, "fold": 0, "metrics": metrics, "run_dir": None}

    mtl = {"name": "mtl", "task": "multitask", "fold": 0, "run_dir": None,
           "config": {"task": {"name": "multitask", "options": {"tasks": ["va", "expr", "au"]}}},
           "metrics": {"va/mean": 0.5, "expr/f1": 0.25, "au/f1": 0.125, SCORE: 0.875}}
    runs = [run("ours", "va", mean=0.4), run("ours", "expr", f1=0.3), run("ours", "au", f1=0.2),
            run("wo_tcn", "va", mean=0.1), mtl]
    table = build_tables(per_task_runs(runs))["table2"]
    assert table["header"] == ["Method", "VA", "Expr", "AU", MULTITASK_SCORE]
    rows = {r["row"]: r for r in table["rows"]}
    assert rows["ours"]["values"][MULTITASK_SCORE]["mean"] == pytest.approx(0.9)
    assert rows["mtl"]["values"][MULTITASK_SCORE]["mean"] == pytest.approx(0.875)
    assert rows["wo_tcn"]["cells"][-1] == "—"  # lacks tasks: no score
    assert all(len(r["cells"]) == 5 for r in table["rows"])
    # Without a multi-task row the table keeps its columns.
    assert build_tables(runs[:4])["table2"]["header"] == ["Method", "VA", "Expr", "AU"]


def test_a_bad_task_list_fails_on_load_naming_the_file_and_line(tmp_path):
    from affbench.core.config import ConfigError, load_config

    path = tmp_path / "row.yaml"
    path.write_text("task:\n  name: multitask\n  options:\n    tasks: [{name: va}, {name: au, weight: -1}]\n")
    with pytest.raises(ConfigError, match=r"row\.yaml:4: task\.options\.tasks\[1\]\.weight: a loss weight > 0"):
        load_config(path)


def test_tuning_fits_each_part_on_the_frames_it_labels():
    task = _task()
    rng = np.random.default_rng(3)
    labels = [_merged_labels(task, 30, [0, 2], 7), _merged_labels(task, 20, [1], 8)]
    raw = [rng.normal(size=(len(lab), task.out_dim)).astype(np.float32) for lab in labels]
    valid = [np.ones(len(lab), bool) for lab in labels]
    state = task.tune(raw, labels, valid, 0)
    au = task.parts[2]
    cols, out = task.layout.label_slices[2], task.layout.out_slices[2]
    # The second video has no AU label: the AU thresholds come from the first video's frames alone.
    assert state == pytest.approx(au.tune([raw[0][:, out]], [labels[0][:, cols]], [valid[0]], 0))
