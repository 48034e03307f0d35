"""`affbench bench`: the report (table, ratios, goals, projection) from a fixture JSON, and argument errors.

Nothing here runs a benchmark: the suites take minutes; these tests read tests/fixtures/bench/results.json,
whose numbers are chosen so every ratio and duration below can be checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affbench import bench_report as P
from affbench.bench_cli import BenchUsageError, find_suite_dir, pytest_command
from affbench.cli import build_parser, main

FIXTURE = Path(__file__).parent / "fixtures" / "bench" / "results.json"

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures of the --config test


@pytest.fixture()
def results():
    return P.load_results(FIXTURE)[0]


def _line(text: str, start: str) -> str:
    found = [line for line in text.splitlines() if line.split()[:2] == start.split()[:2]]
    assert found, f"no line starting with {start!r} in:\n{text}"
    return found[0]


def test_ratio_uses_the_baseline_with_the_same_parameters(results):
    table = P.format_table(results)
    row = _line(table, "backbone backbone_small_config[clip-small-b32]")
    assert "10.00x baseline_torchvision_resnet50[b32]" in row  # 1000 / 100
    assert "[b1]" not in row  # the batch-1 baseline is not a batch-32 benchmark's reference
    assert "0.90x baseline_forward_only[clip_vit_b16]" in _line(table, "extraction extraction[clip_vit_b16]")


def test_group_with_two_baselines_shows_both_ratios(results):
    row = _line(P.format_table(results), "loader window_shards_loader")
    assert "20.00x baseline_per_frame_npy" in row
    assert "1.67x baseline_per_video_npz" in row


def test_paired_ratio_is_shown_next_to_the_rate_ratio(results):
    row = _line(P.format_table(results), "temporal affbench_trainer")
    assert "1.00x baseline_plain_loop" in row and "paired rounds: 0.97x baseline_plain_loop" in row


def test_memory_rows_show_peak_rss_and_growth(results):
    row = _line(P.format_table(results), "memory loader_peak_rss[4x]")
    assert "peak RSS 660 MiB" in row and "+20.0% vs 1x" in row


def test_goals_report_met_and_missed(results):
    by_text = {g.text: g for g in P.goals(results)}
    assert by_text["ViT-B/16 extraction / forward on pre-decoded tensors"].met is True  # 0.9 >= 0.9
    assert by_text["window shards / one .npy per frame"].value == pytest.approx(20.0)
    assert by_text["window shards / one .npz per video"].met is False  # 1.67 < 2
    assert by_text["step fed by the loader / step fed from memory"].met is True  # 0.99
    # The paired-round ratio (0.97) wins over the ratio of the two benchmarks' rates (1.0 / 1.0).
    assert by_text["affbench trainer / plain PyTorch loop"].value == pytest.approx(0.97)
    assert by_text["stage-1 step, depthwise gradients tap by tap / PyTorch's own"].value == pytest.approx(1.9)
    merge = by_text["merging seconds / model seconds"]
    assert merge.value == pytest.approx(1200 / 60000) and merge.met is True
    assert by_text["seconds to generate SynthAffect 'small'"].met is True  # 42 s
    assert by_text["loader peak RSS growth, 4x data"].met is False  # +20 %
    assert "MISSED" in P.format_goals(results)


def test_goal_without_measurement_is_not_judged():
    results, _ = P.parse_results({"benchmarks": [
        {"group": "loader", "name": "test_window_shards_loader", "extra_info": {"items_per_second": 5.0}}]})
    goal = next(g for g in P.goals(results) if g.group == "extraction")
    assert goal.value is None and goal.met is None and "not measured" in goal.describe()


def test_windows_per_fold_and_durations():
    assert P.windows_per_fold(2_200_000, 480, 200) == 11_000 + 480
    assert P.format_duration(42) == "42 s"
    assert P.format_duration(600) == "10 min"
    assert P.format_duration(3 * 3600) == "3.0 h"
    assert P.format_duration(3 * 86400) == "3.0 days"
    assert P.format_duration(None) == "n/a"


def test_projection_from_measured_rates(results):
    extraction, training, validation = P.projections(results, epochs=10)
    assert extraction.seconds == pytest.approx(3_000_000 / 9.0)  # extraction rate of the fixture
    assert training.amount == 5 * 10 * 11_480
    assert training.seconds == pytest.approx(5 * 10 * 11_480 / 1.0)
    assert validation.seconds == pytest.approx(5 * 10 * 550_000 / 1000.0)
    text = P.format_projection(results, epochs=10)
    assert "10 epochs (train.epochs of --epochs" in text
    assert "3.9 days" in text  # 333,333 s of extraction


def test_projection_falls_back_to_forward_rate_without_extraction():
    results, _ = P.parse_results({"benchmarks": [
        {"group": "backbone", "name": "test_backbone_clip_vit_b16[b32]", "params": {"batch": 32},
         "extra_info": {"items_per_second": 30.0, "unit": "frames/s"}}]})
    extraction = P.projections(results, epochs=20)[0]
    assert extraction.rate == 30.0 and "forward only" in extraction.rate_source
    assert "n/a" in P.format_projection(results, epochs=20)  # training not measured: no total


def test_cli_prints_report_from_json(capsys):
    assert main(["bench", "--from-json", str(FIXTURE), "--projection", "--epochs", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: 2 CPU(s) (Example CPU)")
    assert "load start 0.50 0.40 0.30" in out
    assert "Goals:" in out and "Projection for Aff-Wild2-sized work" in out
    assert "20 epochs" in out


@pytest.mark.parametrize("argv,message", [
    (["bench", "--temporal-batch", "0"], "--temporal-batch: must be >= 1"),
    (["bench", "--loader-workers", "-1"], "--loader-workers: must be >= 0"),
    (["bench", "--from-json", str(FIXTURE), "--epochs", "0"], "--epochs: must be >= 1"),
    (["bench", "--from-json", str(FIXTURE), "-k", "loader"], "--from-json prints an earlier run"),
    (["bench", "--from-json", "missing-results.json"], "missing-results.json: no such file"),
])
def test_argument_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_json_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"benchmarks": "nope"}))
    assert main(["bench", "--from-json", str(bad)]) == 2
    assert f"{bad}: expected a pytest-benchmark JSON object" in capsys.readouterr().err


def test_json_path_that_is_a_directory(tmp_path, capsys):
    assert main(["bench", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_bad_device_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--device", "tpu"])
    assert "--device: 'tpu' is not a device; accepted: auto, cpu, cuda or cuda:N" in capsys.readouterr().err


def test_suite_dir_errors_name_where_it_looked(tmp_path):
    with pytest.raises(BenchUsageError, match=str(tmp_path)):
        find_suite_dir(str(tmp_path))
    (tmp_path / "conftest.py").write_text("")
    assert find_suite_dir(str(tmp_path)) == tmp_path


def test_pytest_command_passes_options_through(tmp_path):
    args = build_parser().parse_args(["bench", "--device", "cuda", "--quick", "-k", "loader",
                                      "--temporal-batch", "8", "--", "--benchmark-autosave"])
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    cmd = pytest_command(tmp_path, tmp_path / "out.json", args, extra)
    assert cmd[1:3] == ["-m", "pytest"] and str(tmp_path) in cmd
    for expected in (f"--benchmark-json={tmp_path / 'out.json'}", "--device=cuda", "--quick",
                     "--temporal-batch=8", "--benchmark-autosave"):
        assert expected in cmd
    assert cmd[cmd.index("-k") + 1] == "loader"


def test_quick_runs_print_goals_without_grading_them(results):
    graded, quick = P.format_goals(results), P.format_goals(results, quick=True)
    assert "MISSED" in graded and "MISSED" not in quick and " met" not in quick
    assert quick.count("not graded at quick sizes") == len(P.goals(results))
    assert P.measured_quick({"affbench": {"quick": True}}) and not P.measured_quick({})
    report = P.report(results, {"affbench": {"quick": True}})
    assert "MISSED" not in report and "not graded at quick sizes" in report


def test_webdataset_goal_is_the_ratio_to_webdatasets_reader():
    results, _ = P.parse_results({"benchmarks": [
        {"name": "test_window_shards_loader", "group": "loader", "extra_info": {"items_per_second": 300.0}},
        {"name": "test_baseline_webdataset", "group": "loader", "extra_info": {"items_per_second": 200.0}}]})
    goal = {g.text: g for g in P.goals(results)}["window shards / webdataset.WebDataset on the same shards"]
    assert goal.value == pytest.approx(1.5) and goal.met is True


def test_bench_config_profiles_the_configs_own_components(home, synth_root, tmp_path, capsys):
    from stage_fixtures import tiny_config

    from affbench.core.config import to_yaml

    config = tmp_path / "c.yaml"
    config.write_text(to_yaml(tiny_config(synth_root, train={"epochs": 3})))
    out = tmp_path / "profile.json"
    assert main(["bench", "--config", str(config), "--quick", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not graded at quick sizes" in printed and "MISSED" not in printed
    saved = json.loads(out.read_text())
    rates = {f["what"]: f["rate"] for f in saved["figures"]}
    assert set(rates) == {"backbone forward", "backbone training step (stage 1)", "extraction end to end",
                          "stage 3 training step", "windowed inference"}
    assert all(rate > 0 for rate in rates.values())
    work = {w["what"]: w for w in saved["projection"]}
    # The work of one run on fold 0 of SynthAffect tiny at this config's options.
    train = work["stage 3: train 3 epochs"]
    assert train["amount"] % 3 == 0 and train["seconds"] == pytest.approx(train["amount"] / rates[
        "stage 3 training step"])
    assert work["stage 1: fine-tune"]["amount"] == 48  # finetune.max_frames x 1 epoch
    assert not (home / "cache" / "features").exists()  # the extraction ran in a throwaway cache


def test_paper_suite_projection_counts_the_suites_work():
    p = P.paper_suite_projection(finetune_fps=1000.0, extract_fps=5000.0, train_windows_per_s=100.0,
                                 inference_fps=None, epochs=20)
    assert p["runs"] == 75 and p["total_hours"] is None  # a stage without a rate: no total
    stages = p["stages"]
    assert stages["stage1_finetune"]["amount"] == 5 * 1_600_000  # one shared fine-tune per fold
    assert stages["stage2_extract"]["amount"] == 6 * 3_000_000  # five fine-tuned backbones and the pretrained one
    assert stages["stage1_finetune"]["hours"] == pytest.approx(8_000_000 / 1000 / 3600)
    assert stages["stage3_train"]["amount"] == 75 * 20 * P.windows_per_fold()
    full = P.paper_suite_projection(finetune_fps=1000.0, extract_fps=5000.0, train_windows_per_s=100.0,
                                    inference_fps=1e5, epochs=20)
    assert full["total_hours"] == pytest.approx(sum(s["hours"] for s in full["stages"].values()))


def test_gpu_check_refuses_without_a_gpu(capsys):
    import importlib.util

    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the check would run")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", "unused.json"]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
