"""Whole-video evaluation: every labelled frame scored once, submission files with every frame, smoothing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from trainer_fixtures import make_records, tiny_config, write_tiny_data

import affbench
from affbench.data.window_shards import WindowShards, write_window_shards
from affbench.frame_stats import read_run_frames, task_scoring
from affbench.stages.checkpoints import CheckpointError
from affbench.stages.evaluate import (
    evaluate,
    mode_filter,
    moving_average,
    predict,
    read_order_file,
    run_windows,
    score,
    write_submission,
)
from affbench.stages.pipeline import build_model
from affbench.stages.trainer import train


@pytest.mark.parametrize("task", ["va", "expr", "au"])
def test_every_labelled_frame_scored_once(tmp_path, task):
    records = make_records(task, [23, 5, 40, 17], seed=3, prefix="v")
    write_window_shards(tmp_path, records, window=8, stride=3, manifest_extra={}, maxcount=3, quiet=True)
    config = tiny_config(task)
    model = build_model(config, 6)
    outputs = run_windows(model, WindowShards(tmp_path).iter_windows(), device=torch.device("cpu"), batch_size=5)
    assert outputs.videos == sorted(r.video for r, _, _ in records)
    for record, _, has_image in records:
        assert outputs.outputs[record.video].shape == (record.n_frames, model.task.out_dim)
        np.testing.assert_array_equal(outputs.valid[record.video], record.valid)
        np.testing.assert_array_equal(outputs.labels[record.video], record.labels)
        np.testing.assert_array_equal(outputs.has_face[record.video], has_image)
    metrics, values = score(model.task, outputs)
    assert metrics["frames"] == sum(int(r.valid.sum()) for r, _, _ in records)
    # The merged output equals the mean of the covering windows' outputs, frame by frame.
    record = records[2][0]
    windows = [w for w in WindowShards(tmp_path).iter_windows() if w["video"] == record.video]
    with torch.no_grad():
        model.eval()
        outs = [model(torch.tensor(w["features"][None]).float(), torch.tensor(w["mask"][None]))[0].numpy()
                for w in windows]
    frame = 7  # 1-based frame 7 is covered by the windows starting at 0 and 3 (and 6)
    covering = [o[frame - 1 - w["start"]] for o, w in zip(outs, windows, strict=True)
                if w["start"] < frame <= w["start"] + 8]
    np.testing.assert_allclose(outputs.outputs[record.video][frame - 1], np.mean(covering, axis=0), rtol=1e-5,
                               atol=1e-6)


def test_submission_has_one_row_per_frame_including_faceless(tmp_path):
    task = affbench.create("task", "expr")
    values = {"b": np.array([[1], [2], [3]], np.float32), "a": np.array([[0], [7]], np.float32)}
    path = tmp_path / "EXPR.txt"
    counts = write_submission(task, values, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    assert lines[1:] == ["a/00001.jpg,0", "a/00002.jpg,7", "b/00001.jpg,1", "b/00002.jpg,2", "b/00003.jpg,3"]
    assert counts == {"rows": 5, "filled": 0}
    order = tmp_path / "sample.txt"
    order.write_text("image_location,Neutral\nb/00003.jpg\na/00001.jpg\na/00003.jpg\n")
    counts = write_submission(task, values, path, order=read_order_file(order))
    assert path.read_text().splitlines()[1:] == ["b/00003.jpg,3", "a/00001.jpg,0", "a/00003.jpg,7"]
    assert counts == {"rows": 3, "filled": 1}


def test_smoothing_filters():
    np.testing.assert_allclose(moving_average(np.array([0.0, 3.0, 0.0, 3.0]), 3)[:2], [1.5, 1.0])
    labels = np.array([1, 1, 2, 1, 1, 3, 3, 3])
    np.testing.assert_array_equal(mode_filter(labels, 3, 8), [1, 1, 1, 1, 1, 3, 3, 3])


def test_predict_evaluate_from_checkpoint(tmp_path):
    data = write_tiny_data(tmp_path / "data", "au")
    result = train(tiny_config("au", epochs=2), fold=0, out_dir=tmp_path / "runs", data=data, quiet=True)
    run_dir = tmp_path / "runs" / "au" / "tiny_au" / "fold0"
    assert result["run_dir"] == str(run_dir)
    ev = evaluate(run_dir / "best.pt", data=data, quiet=True)
    assert ev["metrics"] == pytest.approx(result["metrics"])
    out = predict(run_dir / "best.pt", tmp_path / "pred", data=data, quiet=True)
    n_frames = 37 + 12 + 29  # every frame of every validation video, with or without a face
    sub = (tmp_path / "pred" / "AU_submission.txt").read_text().splitlines()
    assert sub[0] == "image_location," + ",".join(affbench.create("task", "au").label_names)
    assert len(sub) - 1 == n_frames == out["rows"]
    assert all(set(line.split(",")[1:]) <= {"0", "1"} for line in sub[1:])
    with open(tmp_path / "pred" / "predictions.validation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == n_frames and {"0", "1"} == {r["face"] for r in rows}
    assert "p_AU1" in rows[0] and "AU26" in rows[0]
    # The labels beside the predictions rescore the run to its metrics without reopening the data.
    assert {"valid", "true_AU1", "true_AU26"} <= set(rows[0]) and {r["valid"] for r in rows} == {"0", "1"}
    frames = read_run_frames(tmp_path / "pred", "au")
    rescored = task_scoring("au").scores["f1"](sum(frames.video_stats().values()))
    assert float(rescored) == pytest.approx(ev["metrics"]["f1"], abs=1e-12)


def test_corrupt_checkpoint_in_evaluate(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=str(path)):
        evaluate(path, data=None, quiet=True)
