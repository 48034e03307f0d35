"""A suite as independent jobs: `--plan` lines (commands, run folders, stage keys) and the submitit launcher
with submitit's local executor (jobs as processes on this machine), end to end on SynthAffect tiny."""

from __future__ import annotations

import json
import shlex

import pytest
from stage_fixtures import tiny_config

from affbench.cli import main
from affbench.core.config import to_yaml
from affbench.suite import load_suite
from affbench.suite_plan import plan_suite

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

# A built-in backbone: the local executor's job processes know only the installed plugins.
TIMM_TINY = {"name": "timm", "options": {"model": "test_resnet", "image_size": 32}}


def _two_run_suite(tmp_path, synth_root, *, seeds: str = ""):
    """ours (fine-tuned) and wo_finetune on VA, fold 0: one stage job each, one run each."""
    rows = {"ours.yaml": tiny_config(synth_root, backbone=TIMM_TINY),
            "wo.yaml": tiny_config(synth_root, name="wo_finetune", backbone=TIMM_TINY, finetune={"enabled": False})}
    for name, config in rows.items():
        (tmp_path / name).write_text(to_yaml(config))
    suite = tmp_path / "two.yaml"
    suite.write_text(f"name: two\nfolds: [0]\nconfigs: [ours.yaml, wo.yaml]\noverrides: {{train.epochs: 1}}\n{seeds}")
    return suite


def test_plan_lines_name_commands_run_folders_and_stage_keys(home, synth_root, tmp_path, capsys):
    suite = _two_run_suite(tmp_path, synth_root, seeds="seeds: [3]\n")
    out = tmp_path / "out"
    assert main(["--quiet", "suite", str(suite), "--out", str(out), "--plan"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    stages = [line for line in lines if line["kind"] == "stage"]
    runs = [line for line in lines if line["kind"] == "run"]
    assert len(stages) == 2 and len(runs) == 2
    assert not (home / "cache" / "finetune").exists() and not (home / "cache" / "features").exists()  # ran nothing

    ours, wo = runs
    assert ours["run_dir"] == str(out / "seed3" / "va" / "ours" / "fold0") and ours["seed"] == ours["train_seed"] == 3
    # Not fine-tuned yet: the features of the fine-tuned backbone are keyed by weights that do not exist yet.
    assert ours["finetune_key"] and ours["feature_key"] is None and ours["needs"] == [f"finetune:{ours['finetune_key']}"]
    assert wo["finetune_key"] is None and wo["feature_key"] and wo["needs"] == [f"features:{wo['feature_key']}"]
    assert {s["id"] for s in stages} == {*ours["needs"], *wo["needs"]}

    # The run's command is what `affbench train` accepts and resolves to the same config as the suite's.
    argv = shlex.split(ours["command"])
    assert argv[:2] == ["affbench", "train"] and "--resume" in argv and "train.seed=3" in argv
    from affbench.core.config import load_config
    from affbench.stages.cli import parse_overrides

    sets = parse_overrides([argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
    planned = plan_suite(load_suite(suite), out).runs[0]
    assert load_config(argv[2], sets).to_dict() == planned.config.to_dict()

    # Once stage 1 has run, the plan knows the feature key of the fine-tuned backbone (the one stage 2 writes).
    from affbench.stages.pipeline import prepare_window_shards

    data = prepare_window_shards(planned.config, fold=0, quiet=True)
    again = plan_suite(load_suite(suite), out).runs[0]
    assert again.finetune_key == ours["finetune_key"] and again.feature_key == data.provenance["feature_key"]


def test_submitit_local_executor_runs_a_two_run_suite(home, synth_root, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    suite = _two_run_suite(tmp_path, synth_root)
    out = tmp_path / "out"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local executor starts the jobs of a wave side by side
    assert main(["--quiet", "suite", str(suite), "--out", str(out), "--no-plots", "--launcher", "submitit",
                 "--cluster", "local", "--gpus-per-run", "0", "--timeout-min", "20"]) == 0

    saved = json.loads((out / "suite.json").read_text())
    assert [(r["name"], r["status"]) for r in saved["runs"]] == [("ours", "trained"), ("wo_finetune", "trained")]
    assert all(r["metrics"] for r in saved["runs"])
    assert (out / "report.md").is_file() and "wo_finetune" in (out / "report.md").read_text()
    # The stage jobs filled the caches; each run only read them (its provenance extracted no frame).
    assert [r["data_provenance"]["extracted_frames"] for r in saved["runs"]] == [0, 0]
    finetunes = [p for p in (home / "cache" / "finetune").iterdir() if (p / "manifest.json").is_file()]
    assert len(finetunes) == 1
    assert list((out / "submitit").glob("*/*_log.err"))

    # Launched again: every run is skipped and the report is written again from the run folders.
    assert main(["--quiet", "suite", str(suite), "--out", str(out), "--no-plots", "--launcher", "submitit",
                 "--cluster", "local", "--gpus-per-run", "0"]) == 0
    again = json.loads((out / "suite.json").read_text())
    assert all(r["status"].startswith("skipped") for r in again["runs"])
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in saved["runs"]]


def test_launcher_errors_are_input_errors(home, synth_root, tmp_path, capsys):
    pytest.importorskip("submitit")
    suite = _two_run_suite(tmp_path, synth_root)
    assert main(["suite", str(suite), "--out", str(tmp_path / "o"), "--launcher", "submitit",
                 "--gpus-per-run", "-1"]) == 2
    assert "--gpus-per-run: expected an integer >= 0" in capsys.readouterr().err
