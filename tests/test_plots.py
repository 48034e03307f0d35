"""The suite's plots answer their questions: what each shows is checked on the matplotlib objects drawn."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import affbench
from affbench import metrics as abaw
from affbench import plots
from affbench.stages.evaluate import VideoOutputs, write_predictions_csv

VIDEOS = ("a_left", "a_right", "b")


@pytest.fixture
def drawn(monkeypatch):
    """Every figure a plot function saves, kept open for inspection (title -> figure)."""
    figures = []

    def keep(fig, path):
        figures.append(fig)
        fig.savefig(path, dpi=30)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    yield figures
    for fig in figures:
        plots._pyplot().close(fig)


def _write_run(tmp_path, task, row, fold, true, values, valid, faces, **extra):
    task_obj = affbench.create("task", task)
    run_dir = tmp_path / task / row / f"fold{fold}"
    raw = {v: (np.eye(8)[p[:, 0].astype(int)] if task == "expr" else p * 8.0 - 4.0 if task == "au" else p)
           for v, p in values.items()}
    outputs = VideoOutputs(outputs=raw, labels=true, valid=valid, has_face=faces)
    write_predictions_csv(task_obj, outputs, values, run_dir / "predictions.validation.csv")
    pred = np.concatenate([values[v][valid[v]] for v in values])
    target = np.concatenate([true[v][valid[v]] for v in values])
    return {"name": row, "task": task, "fold": fold, "seed": 0, "run_dir": str(run_dir),
            "metrics": task_obj.metrics(pred, target), **extra}


def _va_runs(tmp_path):
    rng = np.random.default_rng(0)
    true = {v: np.clip(np.cumsum(rng.normal(0, 0.1, (n, 2)), axis=0), -1, 1).astype(np.float32)
            for v, n in zip(VIDEOS, (90, 60, 40), strict=True)}
    valid = {v: np.arange(len(t)) % 17 != 0 for v, t in true.items()}
    faces = {v: ~((np.arange(len(t)) >= 10) & (np.arange(len(t)) < 15)) for v, t in true.items()}  # frames 11-15
    runs = []
    for row, noise in (("ours", 0.1), ("wo_tcn", 0.6), ("baseline", 0.3)):
        values = {v: np.clip(t + rng.normal(0, noise, t.shape), -1, 1).astype(np.float32) for v, t in true.items()}
        runs.append(_write_run(tmp_path, "va", row, 0, true, values, valid, faces))
    return runs, true, valid


def test_va_traces_title_each_video_with_the_ccc_of_both_rows_and_shade_faceless_frames(tmp_path, drawn):
    runs, true, valid = _va_runs(tmp_path)
    written = plots.write_plots(runs, tmp_path / "plots", main="ours")
    assert tmp_path / "plots" / "va_traces.png" in written
    fig = drawn[0]
    best_other = max(runs[1:], key=lambda r: r["metrics"]["mean"])["name"]
    assert best_other == "baseline" and "ours vs baseline (best other row)" in fig._suptitle.get_text()
    axes = fig.axes
    assert len(axes) == 6  # three videos x (valence, arousal), longest first
    title = axes[0].get_title()
    assert title.startswith("a_left: valence")
    preds = {r["name"]: plots.read_run_frames(r["run_dir"], "va") for r in runs}
    for name in ("ours", "baseline"):
        frames = preds[name]
        ccc = abaw.ccc(frames.pred["a_left"][frames.scored["a_left"], 0], true["a_left"][valid["a_left"], 0])
        assert f"{name} {ccc:.2f}" in title
    assert "wo_tcn" not in title
    assert {line.get_label() for line in axes[0].get_lines()} == {"true", "ours", "baseline"}
    shaded = [p for p in axes[0].patches if p.get_label() == "no face"]
    assert len(shaded) == 1 and shaded[0].get_x() == pytest.approx(10.5)  # frames 11-15 have no face
    assert all(ax.get_ylabel() in ("valence", "arousal") and ax.get_xlabel() == "frame" for ax in axes)


def test_expr_confusion_labels_its_colour_bar_and_says_when_a_class_has_no_frames(tmp_path, drawn):
    rng = np.random.default_rng(1)
    classes = np.array([0, 1, 2, 4, 5, 6, 7])  # no Fear (3)
    true = {v: rng.choice(classes, (50, 1)).astype(np.float32) for v in VIDEOS}
    values = {v: np.where(rng.random((50, 1)) < 0.5, t, rng.integers(0, 8, (50, 1))).astype(np.float32)
              for v, t in true.items()}
    valid = {v: np.ones(50, bool) for v in VIDEOS}
    run = _write_run(tmp_path, "expr", "ours", 0, true, values, valid, {v: np.ones(50, bool) for v in VIDEOS})
    assert plots.plot_confusion(run, tmp_path / "c.png") == tmp_path / "c.png"
    image_ax, bar_ax = drawn[0].axes
    assert bar_ax.get_ylabel() == "fraction of true class"
    labels = [t.get_text() for t in image_ax.get_yticklabels()]
    assert labels[3] == "Fear (no frames)"
    n_anger = int(sum((t[:, 0] == 1).sum() for t in true.values()))
    assert labels[1] == f"Anger (n={n_anger})"
    assert any("no frames of this class" in t.get_text() for t in image_ax.texts)
    assert image_ax.get_xlabel() == "predicted class" and image_ax.get_ylabel().startswith("true class")


def test_au_f1_marks_a_zero_bar_and_draws_the_all_on_reference_per_au(tmp_path, drawn):
    rng = np.random.default_rng(2)
    rates = np.linspace(0.05, 0.6, 12)
    true = {v: (rng.random((80, 12)) < rates).astype(np.float32) for v in VIDEOS}
    valid = {v: np.ones(80, bool) for v in VIDEOS}
    faces = {v: np.ones(80, bool) for v in VIDEOS}
    good = {v: np.where(rng.random(t.shape) < 0.8, t, 1 - t).astype(np.float32) for v, t in true.items()}
    never_au1 = {v: np.concatenate([np.zeros((80, 1), np.float32), p[:, 1:]], axis=1) for v, p in good.items()}
    runs = [_write_run(tmp_path, "au", "ours", 0, true, good, valid, faces),
            _write_run(tmp_path, "au", "wo_tcn", 0, true, never_au1, valid, faces)]
    assert runs[1]["metrics"]["f1_AU1"] == 0.0
    assert plots.plot_label_f1(runs, "au", tmp_path / "au.png") == tmp_path / "au.png"
    ax = drawn[0].axes[0]
    zero = [line for line in ax.get_lines() if line.get_label() == "F1 = 0"]
    assert len(zero) == 1 and len(zero[0].get_xdata()) == 1 and zero[0].get_xdata()[0] < 0.5  # AU1, second bar
    all_true = np.concatenate(list(true.values()))
    p = all_true.mean(axis=0)
    reference = [c for c in ax.collections if c.get_label() == "ref: all labels on, 2p/(1+p)"]
    heights = np.array([seg[0][1] for seg in reference[0].get_segments()])
    np.testing.assert_allclose(heights, 2 * p / (1 + p), rtol=1e-6)
    assert ax.get_ylabel() == "F1 (validation)" and ax.get_xlabel() == "au label"


def _history(path, select, scores):
    prefix = {"inner": "selection_", "validation": "val_"}[select]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "step", "lr", "train_loss", f"{prefix}mean", "seconds"])
        for i, score in enumerate(scores):
            writer.writerow([i + 1, 4 * (i + 1), 1e-3, 1.0 / (i + 1), score, 1.0])


@pytest.mark.parametrize("select", ["inner", "validation"])
def test_training_curves_label_every_axis_mark_the_selected_epoch_and_show_the_reported_split(tmp_path, drawn,
                                                                                               select):
    run_dir = tmp_path / "va" / "ours" / "fold0"
    run_dir.mkdir(parents=True)
    _history(run_dir / "metrics.csv", select, [0.2, 0.5, 0.4])
    run = {"name": "ours", "task": "va", "fold": 0, "seed": 0, "run_dir": str(run_dir), "best_epoch": 2,
           "metrics": {"mean": 0.31, "valence": 0.3, "arousal": 0.32}, "config": {"train": {"select": select}}}
    assert plots.plot_training_curves([run], tmp_path / "t.png") == tmp_path / "t.png"
    loss_ax, score_ax = drawn[0].axes
    assert loss_ax.get_ylabel() == "training loss" and score_ax.get_ylabel() == "mean CCC (valence, arousal)"
    assert loss_ax.get_xlabel() == score_ax.get_xlabel() == "epoch"
    split = "selection split (held-out training videos)" if select == "inner" else "validation (the reported frames)"
    assert score_ax.get_title() == f"va: {split}"
    star = [line for line in score_ax.get_lines() if line.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_xdata()) == [2] and list(star[0].get_ydata()) == [0.5]
    reported = [line for line in score_ax.get_lines() if line.get_marker() == "s"]
    if select == "inner":  # the validation score of the kept epoch, apart from the selecting curve
        assert list(reported[0].get_xdata()) == [2] and list(reported[0].get_ydata()) == [0.31]
    else:  # the curve is the reported split itself
        assert reported == []
