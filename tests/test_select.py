"""train.select: which epoch is reported, and which split may pick it.

Under ``inner`` the validation split is read once, after training: its labels cannot move the chosen epoch or
the AU thresholds. ``last`` reports the last epoch; ``validation`` keeps the paper's practice.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_fixtures import (
    FEATURE_DIM,
    TINY_SPLITS,
    make_records,
    tiny_config,
    write_split,
    write_tiny_data,
)

from affbench.core.config import ConfigError, resolve
from affbench.data.window_shards import WindowShards
from affbench.stages.checkpoints import load_checkpoint
from affbench.stages.pipeline import WindowData
from affbench.stages.trainer import train

VALIDATION_LENGTHS = {split: lengths for split, lengths, _ in TINY_SPLITS}["validation"]


def _history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "windows_per_s")} for row in rows]


def _relabelled_validation(root: Path, task: str) -> Path:
    """The fixture's validation videos with the same features but labels shuffled across frames and flipped."""
    records = make_records(task, VALIDATION_LENGTHS, 100, prefix="val_v")
    rng = np.random.default_rng(7)
    for record, _, _ in records:
        record.labels[:] = 1.0 - record.labels[rng.permutation(record.n_frames)]
    return write_split(root / "validation_relabelled", task, "validation", records)


def test_inner_never_lets_validation_labels_choose(tmp_path):
    data = write_tiny_data(tmp_path / "data", "au")
    other = WindowData(data.train_dir, _relabelled_validation(tmp_path, "au"), FEATURE_DIM, selection_dir=data.selection_dir)
    config = tiny_config("au", epochs=4, lr=3e-2)
    config["eval"]["tune_thresholds"] = True
    a = train(config, fold=0, out_dir=tmp_path / "a", data=data, quiet=True)
    b = train(config, fold=0, out_dir=tmp_path / "b", data=other, quiet=True)
    run_a, run_b = Path(a["run_dir"]), Path(b["run_dir"])
    assert a["select"] == "inner" and a["selection"]["split"] == "selection"
    assert a["best_epoch"] == b["best_epoch"] and a["thresholds"] == b["thresholds"] is not None
    assert a["selection"]["metrics"] == b["selection"]["metrics"]
    assert _without_timing(_history(run_a)) == _without_timing(_history(run_b))
    best_a, best_b = load_checkpoint(run_a / "best.pt"), load_checkpoint(run_b / "best.pt")
    assert all(torch.equal(best_a["model"][k], best_b["model"][k]) for k in best_a["model"])
    # The validation labels were read, at the end: the reported scores differ, the choice does not.
    assert a["metrics"]["f1"] != b["metrics"]["f1"] and a["metrics"]["frames"] == b["metrics"]["frames"]
    columns = _history(run_a)[0].keys()
    assert "selection_f1" in columns and not any(c.startswith("val_") for c in columns)
    written = json.loads((run_a / "metrics.json").read_text())
    assert written["metrics"] == a["metrics"] and written["last"] == a["last"]
    assert written["selection"]["videos"] == ["sel_v0", "sel_v1"]
    provenance = json.loads((run_a / "data_provenance.json").read_text())
    assert provenance["select"] == {"mode": "inner", "split": "selection", "videos": ["sel_v0", "sel_v1"]}


def _reads(monkeypatch) -> list[str]:
    """Which split's window shards were read, in order (the training loader and whole-split passes)."""
    reads: list[str] = []
    iter_windows, loader = WindowShards.iter_windows, WindowShards.loader

    def logged_iter(self):
        reads.append(self.directory.name)
        return iter_windows(self)

    def logged_loader(self, *args, **kwargs):
        reads.append(self.directory.name)
        return loader(self, *args, **kwargs)

    monkeypatch.setattr(WindowShards, "iter_windows", logged_iter)
    monkeypatch.setattr(WindowShards, "loader", logged_loader)
    return reads


def test_inner_reads_no_validation_window_before_the_final_scoring(tmp_path, monkeypatch):
    data = write_tiny_data(tmp_path / "data", "va")
    reads = _reads(monkeypatch)
    result = train(tiny_config("va", epochs=3), fold=0, out_dir=tmp_path / "runs", data=data, quiet=True)
    first = reads.index("validation")
    assert reads.count("selection") == 3 and "selection" not in reads[first:] and "train" not in reads[first:]
    expected = 1 if result["best_epoch"] == 3 else 2  # the last checkpoint, then the selected one if it differs
    assert reads[first:] == ["validation"] * expected
    rows = list(csv.DictReader(open(Path(result["run_dir"]) / "predictions.validation.csv")))
    assert len(rows) == sum(VALIDATION_LENGTHS)


def test_inner_finished_run_resumes_to_the_same_report(tmp_path):
    data = write_tiny_data(tmp_path / "data", "va")
    config = tiny_config("va", epochs=3)
    whole = train(config, fold=0, out_dir=tmp_path, data=data, quiet=True)
    again = train(config, fold=0, out_dir=tmp_path, data=data, quiet=True, resume=True)  # only the final scoring
    assert again["epochs_run"] == 3 and again["best_epoch"] == whole["best_epoch"]
    assert again["metrics"] == whole["metrics"] and again["last"] == whole["last"]


def test_last_reports_the_last_epoch(tmp_path, monkeypatch):
    data = write_tiny_data(tmp_path / "data", "expr")
    reads = _reads(monkeypatch)
    result = train(tiny_config("expr", epochs=3, select="last"), fold=0, out_dir=tmp_path, data=data, quiet=True)
    run_dir = Path(result["run_dir"])
    assert result["best_epoch"] == 3 and result["metrics"] == result["last"] and result["selection"]["split"] is None
    assert "selection" not in reads and reads.index("validation") == len(reads) - 1
    columns = _history(run_dir)[0].keys()
    assert not any(c.startswith(("val_", "selection_")) for c in columns)
    best, last = load_checkpoint(run_dir / "best.pt"), load_checkpoint(run_dir / "last.pt")
    assert best["epoch"] == 3 and best["select"] == "last"
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])


def test_validation_mode_scores_validation_every_epoch(tmp_path, monkeypatch):
    data = write_tiny_data(tmp_path / "data", "va")
    reads = _reads(monkeypatch)
    result = train(tiny_config("va", epochs=3, select="validation"), fold=0, out_dir=tmp_path, data=data,
                   quiet=True)
    assert reads.count("validation") == 3 and "selection" not in reads
    history = _history(Path(result["run_dir"]))
    scores = [float(row["val_mean"]) for row in history]
    assert result["best_epoch"] == int(np.argmax(scores)) + 1
    assert result["metrics"]["mean"] == pytest.approx(scores[result["best_epoch"] - 1], rel=1e-5)
    assert result["last"]["mean"] == pytest.approx(scores[-1], rel=1e-5)


def test_select_settings_are_checked(tmp_path):
    data = write_tiny_data(tmp_path / "data", "va")
    no_selection = WindowData(data.train_dir, data.validation_dir, FEATURE_DIM)
    with pytest.raises(ValueError, match="no 'selection' split"):
        train(tiny_config("va", epochs=1), fold=0, out_dir=tmp_path, data=no_selection, quiet=True)
    au = tiny_config("au", select="last").to_dict()
    with pytest.raises(ConfigError, match="eval.tune_thresholds: needs a split to score each epoch on"):
        resolve({**au, "eval": {**au["eval"], "tune_thresholds": True}})
    with pytest.raises(ConfigError, match="train.early_stopping: needs a split"):
        tiny_config("va", select="last", early_stopping=2)
    with pytest.raises(ConfigError, match="select_fraction: must be between 0 and 1"):
        tiny_config("va", select_fraction=1.0)
