"""Config loading: include and merge rule, defaults, sources, and errors that name the file and the key."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from affbench.core.config import ConfigError, dump_resolved, find_config, load_config, schema_reference

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_merge_rule_and_sources(tmp_path):
    write(tmp_path / "a.yaml", "task: va\ntrain: {lr: 1.0e-4, epochs: 3}\nmodel: {head: {hidden: 64}}\n"
                               "data: {dataset: affwild2}\n")
    write(tmp_path / "b.yaml", "train: {epochs: 4, batch_size: 8}\n")
    row = write(tmp_path / "sub" / "row.yaml",
                "include: [../a.yaml, ../b.yaml]\nname: r\ntrain:\n  batch_size: 2\nmodel:\n  temporal: []\n"
                "eval: {smoothing: null}\n")
    c = load_config(row, {"train.seed": 7, "model": {"head": {"dropout": 0.1}}})
    assert c["train"]["lr"] == 1e-4 and c["train"]["epochs"] == 4  # later include wins over earlier
    assert c["train"]["batch_size"] == 2  # the including file wins
    assert c["train"]["seed"] == 7
    assert c["model"]["head"] == {"hidden": 64, "dropout": 0.1, "norm": "batch", "activation": "relu"}
    assert c["model"]["temporal"] == []  # lists replace whole
    assert c["eval"]["smoothing"] is None
    assert c["train"]["weight_decay"] == 1e-5  # default filled in
    assert c["task"] == {"name": "va", "options": {}}
    assert c.where("train.lr") == f"{tmp_path / 'a.yaml'}:2"
    assert c.where("train.epochs") == f"{tmp_path / 'b.yaml'}:1"
    assert c.where("train.batch_size").startswith(str(row))
    assert c.where("train.seed") == "<override>"


def test_component_with_other_name_replaces_whole(tmp_path):
    write(tmp_path / "a.yaml", "task: va\ndata: {dataset: affwild2}\n"
                               "backbone: {name: clip, options: {arch: ViT-B-16}}\n")
    row = write(tmp_path / "row.yaml", "include: a.yaml\nbackbone: {name: timm, options: {model: resnet18}}\n")
    assert load_config(row)["backbone"] == {"name": "timm", "options": {"model": "resnet18"}}


@pytest.mark.parametrize("text, key", [
    ("train: {lrr: 0.1}\n", "train.lrr"),
    ("train: {lr: fast}\n", "train.lr"),
    ("train: {epochs: 2.5}\n", "train.epochs"),
    ("model: {temporal: [{name: tcnn}]}\n", "model.temporal[0].name"),
    ("task: vaa\n", "task.name"),
    ("model: {temporal: [{name: tcn, options: {chanels: [4]}}]}\n", "model.temporal[0].options.chanels"),
    ("train: {schedule: cosinus}\n", "train.schedule"),
    ("data: {window: 10, stride: 20}\n", "data.stride"),
])
def test_errors_name_file_and_key(tmp_path, text, key):
    write(tmp_path / "base.yaml", "task: va\ndata: {dataset: affwild2}\n")
    row = write(tmp_path / "row.yaml", "include: base.yaml\n" + text)
    with pytest.raises(ConfigError) as err:
        load_config(row)
    message = str(err.value)
    assert str(row) in message and key in message


def test_error_in_included_file_names_that_file(tmp_path):
    base = write(tmp_path / "base.yaml", "task: va\ndata: {dataset: affwild2}\ntrain:\n  warmup: 1\n")
    row = write(tmp_path / "row.yaml", "include: base.yaml\n")
    with pytest.raises(ConfigError, match=rf"{base}:4: train.warmup: unknown key.*Did you mean 'warmup_epochs'"):
        load_config(row)


def test_bad_include_path_and_cycle(tmp_path):
    row = write(tmp_path / "row.yaml", "include: missing.yaml\ntask: va\n")
    with pytest.raises(ConfigError, match=rf"{row}:1: include: file not found: 'missing.yaml'"):
        load_config(row)
    write(tmp_path / "x.yaml", "include: y.yaml\n")
    write(tmp_path / "y.yaml", "include: x.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(tmp_path / "x.yaml")


def test_dump_resolved_round_trips(tmp_path):
    row = write(tmp_path / "row.yaml", "task: expr\ndata: {dataset: affwild2}\ntrain: {lr: 1e-3}\n")
    c = load_config(row)
    out = dump_resolved(c, tmp_path / "run" / "config.resolved.yaml")
    again = load_config(out)
    assert again.to_dict() == c.to_dict()
    assert f"# from: {row}" in out.read_text()


def test_schema_reference_lists_every_key():
    keys = [row[0] for row in schema_reference()]
    assert "train.lr" in keys and "model.temporal" in keys and "eval.smoothing" in keys


@pytest.mark.parametrize("path", sorted(glob.glob(str(ROOT / "configs" / "*" / "*" / "*.yaml"))),
                         ids=lambda p: str(Path(p).relative_to(ROOT / "configs")))
def test_builtin_configs_load(path):
    c = load_config(path)
    rel = Path(path).relative_to(ROOT / "configs")
    assert c["task"]["name"] == rel.parts[1] and c["name"] == rel.stem
    # The built-in name finds the installed copy of this very file (a wheel install holds a copy, not the path).
    assert find_config(str(rel.with_suffix(""))).read_bytes() == Path(path).read_bytes()
    if rel.parts[0] == "paper":
        assert (c["train"]["lr"], c["train"]["batch_size"], c["data"]["window"], c["data"]["stride"]) == \
            (3e-5, 32, 300, 200)
        assert (c["finetune"]["lr"], c["finetune"]["batch_size"]) == (1e-4, 256)


def test_the_section_dataclasses_hold_the_defaults_a_config_resolves_to():
    import dataclasses

    from affbench.core.config import RunConfig, resolve

    typed = dataclasses.asdict(RunConfig(name="run", task={"name": "va", "options": {}}))
    assert resolve({"task": "va"}, check_components=False).to_dict() == typed
    assert RunConfig().model.temporal is not RunConfig().model.temporal  # defaults are never shared
