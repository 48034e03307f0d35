"""Stage-3 training: run directory contents, deterministic reruns, early stopping, masked losses."""

from __future__ import annotations

import json

import pytest
import torch
from trainer_fixtures import tiny_config, write_tiny_data

from affbench.core.config import load_config, resolve
from affbench.data.shard_manifest import ProvenanceMismatchError
from affbench.stages.checkpoints import load_checkpoint
from affbench.stages.trainer import train


def test_run_directory_and_deterministic_rerun(tmp_path):
    data = write_tiny_data(tmp_path / "data", "expr")
    config = tiny_config("expr", epochs=2, select="validation")  # the paper's practice, kept as it was
    a = train(config, fold=0, out_dir=tmp_path / "a", data=data, quiet=True)
    b = train(config, fold=0, out_dir=tmp_path / "b", data=data, quiet=True)
    assert a["metrics"] == b["metrics"] and a["best_epoch"] == b["best_epoch"]
    run_a = tmp_path / "a" / "expr" / "tiny_expr" / "fold0"
    wa = load_checkpoint(run_a / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "expr" / "tiny_expr" / "fold0" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    names = {p.name for p in run_a.iterdir()}
    assert {"config.resolved.yaml", "plugins.json", "seed", "fold_manifest.json", "metrics.csv", "metrics.json",
            "best.pt", "last.pt", "predictions.validation.csv", "data_provenance.json"} <= names
    assert load_config(run_a / "config.resolved.yaml").to_dict() == config.to_dict()
    assert (run_a / "seed").read_text().strip() == "0"
    plugins = json.loads((run_a / "plugins.json").read_text())
    assert {c["name"] for c in plugins["components"]} >= {"expr", "tcn", "transformer"}
    assert all(c["version"] != "?" for c in plugins["components"])
    rows = (run_a / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr,train_loss,val_f1") and len(rows) == 3
    best = load_checkpoint(run_a / "best.pt")
    assert best["epoch"] == a["best_epoch"] and best["metrics"] == a["metrics"] and best["fold"] == 0


def test_other_seed_changes_the_run(tmp_path):
    data = write_tiny_data(tmp_path / "data", "va")
    a = train(tiny_config("va", epochs=1), fold=0, out_dir=tmp_path / "a", data=data, quiet=True)
    b = train(tiny_config("va", epochs=1, seed=1), fold=0, out_dir=tmp_path / "b", data=data, quiet=True)
    assert a["metrics"]["mean"] != b["metrics"]["mean"]


def test_early_stopping_and_finished_resume(tmp_path):
    data = write_tiny_data(tmp_path / "data", "va")
    config = tiny_config("va", epochs=6, lr=0.0, warmup_epochs=0, early_stopping=1).to_dict()
    config["model"]["head"]["norm"] = "none"  # no running statistics: with lr 0 the model never changes
    config = resolve(config)
    result = train(config, fold=None, out_dir=tmp_path, data=data, quiet=True)
    assert result["epochs_run"] == 2 and result["best_epoch"] == 1  # lr 0: never improves after epoch 1
    assert (tmp_path / "va" / "tiny_va" / "official" / "metrics.json").is_file()
    again = train(config, fold=None, out_dir=tmp_path, data=data, quiet=True, resume=True)
    assert again["epochs_run"] == 2 and again["metrics"] == result["metrics"]


def test_window_shards_built_for_another_config_are_refused(tmp_path):

    data = write_tiny_data(tmp_path / "data", "va", window=16, stride=10)
    va = tiny_config("va").to_dict()
    other_stride = resolve({**va, "data": {**va["data"], "stride": 8}}, path="tiny.yaml")
    with pytest.raises(ProvenanceMismatchError, match=r"stride.*10.*8"):
        train(other_stride, out_dir=tmp_path / "runs", quiet=True, data=data)
    other_task = tiny_config("expr")
    with pytest.raises(ProvenanceMismatchError, match=r"task\.name.*va.*expr"):
        train(other_task, out_dir=tmp_path / "runs", quiet=True, data=data)


@pytest.mark.parametrize("select", ["inner", "validation"])
def test_epoch_lines_stay_short_and_the_per_au_detail_goes_to_metrics_csv(tmp_path, capsys, select):
    data = write_tiny_data(tmp_path / "data", "au")
    config = tiny_config("au", epochs=2, select=select).to_dict()
    config["name"] = "wo_temporal_encoder"  # the longest row name of the paper's suites
    train(resolve(config), fold=0, out_dir=tmp_path, data=data, quiet=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[wo_temporal_encoder]")]
    assert len(lines) == (3 if select == "inner" else 2)  # one per epoch; inner: then the one look at validation
    assert all(len(line) < 120 and "f1=" in line and "AU12" not in line for line in lines), lines
    prefix = "selection_" if select == "inner" else "val_"
    header = (tmp_path / "au" / "wo_temporal_encoder" / "fold0" / "metrics.csv").read_text().splitlines()[0]
    assert f"{prefix}f1_AU12" in header.split(",")
