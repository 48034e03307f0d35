"""Input errors of every command: one line naming the file, line or key and what is accepted, exit code 2."""

from __future__ import annotations

import types

import pytest
import torch
from faults import assert_input_error, cli, cli_process, flip_byte, write_config

import affbench
from affbench.core.config import ConfigError, load_config
from affbench.core.registry import get_registry
from affbench.data.shard_manifest import MANIFEST_NAME

pytestmark = pytest.mark.filterwarnings("ignore:affbench. skipped plugin:RuntimeWarning")


@pytest.mark.parametrize(("text", "fragments"), [
    ("train: {lr: .nan}", ["train.lr", "finite"]),
    ("train: {lr: .inf}", ["train.lr", "finite"]),
    ("train: {epochs: 0}", ["train.epochs", "> 0"]),
    ("model: {head: {dropout: 1.5}}", ["model.head.dropout", "[0, 1)"]),
    ("train: {lr: 1.0e-3}\ntrain: {lr: 1.0e-5}", ["row.yaml:3", "duplicate key 'train'", "line 2"]),
])
@pytest.mark.parametrize("command", ["train", "finetune", "extract"])
def test_bad_config_is_one_line_for_every_command(tmp_path, text, fragments, command):
    assert_input_error(cli(command, str(write_config(tmp_path, text))), f"affbench {command}: error:", *fragments)


def test_evaluate_and_predict_report_a_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "run" / "best.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    assert_input_error(cli("evaluate", str(bad.parent)), "affbench evaluate: error:", str(bad), "corrupt")
    assert_input_error(cli("predict", str(bad)), "affbench predict: error:", str(bad))
    assert_input_error(cli("evaluate", str(tmp_path / "nowhere.pt")), "not found", "nowhere.pt")


def test_debug_shows_the_traceback(tmp_path):
    path = write_config(tmp_path, "train: {epochs: 0}")
    done = cli_process("--debug", "train", str(path))
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_unwritable_out_fails_before_the_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFBENCH_HOME", str(tmp_path / "home"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = assert_input_error(cli("train", "synthaffect/va/ours", "--out", str(blocker / "runs")),
                              "--out", str(blocker / "runs"), "not writable")
    assert "affbench train" in line
    cache = tmp_path / "home" / "cache"
    assert not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True  # no stage ran


def test_unwritable_home_fails_before_the_stages(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("AFFBENCH_HOME", str(blocker))
    assert_input_error(cli("train", "synthaffect/va/ours", "--out", str(tmp_path / "runs")),
                       "AFFBENCH_HOME", "not writable")


def test_suite_with_a_missing_root_is_one_line(tmp_path):
    outcome = cli("suite", "paper", "--data", "affwild2", "--root", "/nonexistent", "--out", str(tmp_path / "s"))
    assert_input_error(outcome, "affbench suite: error:", "/nonexistent", "affwild2")
    assert "[1/" not in outcome.out + outcome.err  # refused before the first row


def test_unknown_builtin_config_suggests_the_closest(tmp_path):
    assert_input_error(cli("train", "synthaffect/va/our"), "config not found", "Did you mean 'synthaffect/va/ours'")


def test_include_accepts_builtin_names(tmp_path):
    config = load_config(write_config(tmp_path, "train: {epochs: 3}"))
    assert config["train"]["epochs"] == 3 and config["data"]["window"] == load_config(
        write_config(tmp_path, "", name="plain.yaml"))["data"]["window"]
    with pytest.raises(ConfigError, match="include: file not found: 'synthaffect/va/nope'"):
        load_config(write_config(tmp_path, "", name="bad.yaml", base="synthaffect/va/nope"))


def test_a_plugin_calling_sys_exit_at_import_is_isolated_and_named(tmp_path):
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit('I quit')\n")
    dist = tmp_path / "exiting_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[affbench]\nexiting = exiting_plugin\n")
    env = {"PYTHONPATH": str(tmp_path), "AFFBENCH_DISABLE_PLUGIN_AUTOLOAD": ""}
    listed = cli_process("list", "task", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "va" in listed.stdout and "plugin 'exiting' (exiting_plugin)" in listed.stderr
    assert "SystemExit: I quit" in listed.stderr
    plugins = cli_process("plugins", env=env)
    assert plugins.returncode == 0 and "FAILED: failed to import: SystemExit" in plugins.stdout


def test_a_failing_factory_is_named_with_its_plugin():
    module = types.ModuleType("failing_factory_plugin")

    def broken_dataset(root: str = "x"):
        """A dataset whose factory fails."""
        raise FileNotFoundError(2, "No such file or directory", root)

    @affbench.hookimpl
    def affbench_register_datasets(register):
        register("brokenset", broken_dataset)

    module.affbench_register_datasets = affbench_register_datasets
    registry = get_registry()
    if not any(c.name == "brokenset" for c in registry.list("dataset")):
        registry.register_plugin(module, name="broken-plugin", version="9.9")
    with pytest.raises(FileNotFoundError) as info:
        affbench.create("dataset", "brokenset", root="/data/x")
    assert "dataset 'brokenset' (plugin 'broken-plugin')" in str(info.value) and "/data/x" in str(info.value)


def test_an_invalid_manifest_names_its_path(tmp_path):
    from trainer_fixtures import write_tiny_data

    from affbench.data.window_shards import WindowShards

    data = write_tiny_data(tmp_path / "data")
    manifest = data.train_dir / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('"shards"', '"shardz"'))
    with pytest.raises(ValueError, match=f"{manifest}: lacks a 'shards' list"):
        WindowShards(data.train_dir)
    manifest.write_text("{ not json")
    with pytest.raises(ValueError, match=f"{manifest}: not valid JSON"):
        WindowShards(data.train_dir)


def test_a_corrupt_shard_read_by_a_worker_is_named(tmp_path):
    from trainer_fixtures import write_tiny_data

    from affbench.data.shard_payloads import CorruptShardError
    from affbench.data.window_shards import WindowShards

    data = write_tiny_data(tmp_path / "data")
    reader = WindowShards(data.train_dir)
    flip_byte(reader.directory / reader.manifest["shards"][0]["name"])
    loader = reader.loader(2, num_workers=1)
    with pytest.raises(CorruptShardError) as info:
        list(loader)
    message = str(info.value)
    assert reader.manifest["shards"][0]["name"] in message and "checksum" in message
    assert "DataLoader worker" not in message and "Traceback" not in message


def test_labels_out_of_range_fail_before_the_stages(tmp_path):
    from affbench.data.record_checks import check_labels
    from affbench.data.records import VideoRecord

    labels = torch.zeros(4, 2).numpy()
    labels[2, 1] = 3.0
    record = VideoRecord("v1", "v1", ["v1/00001.jpg"] * 4, labels, (labels[:, 0] == 0))
    with pytest.raises(ValueError, match=r"dataset 'custom' video 'v1' frame 3: va label 3.0 \(column 1\) is out "
                                         r"of range; accepted: numbers"):
        check_labels([record], "va", "custom")
    record.valid[2] = False  # an unusable frame may hold anything
    check_labels([record], "va", "custom")
