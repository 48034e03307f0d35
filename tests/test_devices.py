"""One device rule for every command: --device, the config's device key, $AFFBENCH_DEVICE, auto."""

from __future__ import annotations

import json

import pytest
import torch
from stage_fixtures import tiny_config

from affbench.cli import build_parser, main
from affbench.core.config import ConfigError, resolve, to_yaml
from affbench.devices import DeviceError, check_device, requested_device, resolve_device

pytest_plugins = ["stage_plugin"]

MODEL_COMMANDS = [["finetune", "c.yaml"], ["extract", "c.yaml"], ["train", "c.yaml"], ["evaluate", "run"],
                  ["predict", "run"], ["suite", "paper"], ["bench"]]


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_forms_accepted(text):
    assert check_device(text) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "CPU", "mps", ""])
def test_device_forms_refused_name_the_option(text):
    with pytest.raises(DeviceError, match=r"--device: .* accepted: auto, cpu, cuda or cuda:N"):
        check_device(text)


def test_request_order_and_resolution(monkeypatch):
    monkeypatch.delenv("AFFBENCH_DEVICE", raising=False)
    assert requested_device(None) == "auto" and requested_device("cpu") == "cpu"
    monkeypatch.setenv("AFFBENCH_DEVICE", "cpu")
    assert requested_device(None) == requested_device("auto") == "cpu"
    assert requested_device("cuda:1") == "cuda:1"  # the explicit request wins over the environment
    monkeypatch.setenv("AFFBENCH_DEVICE", "tpu")
    with pytest.raises(DeviceError, match=r"\$AFFBENCH_DEVICE: 'tpu'"):
        requested_device(None)
    monkeypatch.delenv("AFFBENCH_DEVICE")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: c[0])
def test_every_model_command_takes_one_device_option(command):
    args = build_parser().parse_args([*command, "--device", "cuda:1"])
    assert args.device == "cuda:1"


def test_bad_device_option_exits_2_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "c.yaml", "--device", "gpu0"])
    assert exc.value.code == 2 and "--device: 'gpu0' is not a device" in capsys.readouterr().err


def test_config_device_key_is_checked(synth_root):
    assert resolve(tiny_config(synth_root))["device"] == "auto"
    with pytest.raises(ConfigError, match="device: 'gpu' is not a device; accepted: auto, cpu, cuda or cuda:N"):
        resolve({**tiny_config(synth_root), "device": "gpu"})


def test_device_option_reaches_the_stages_and_is_recorded(home, synth_root, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(to_yaml(tiny_config(synth_root)))
    out = tmp_path / "runs"
    assert main(["--quiet", "train", str(config), "--fold", "0", "--out", str(out), "--device", "cpu"]) == 0
    run = out / "va" / "ours" / "fold0"
    assert "device: cpu" in (run / "config.resolved.yaml").read_text()
    provenance = json.loads((run / "data_provenance.json").read_text())
    assert provenance["device"] == "cpu"
    assert provenance["data"]["finetune"] is not None
    manifest = json.loads((home / "cache" / "finetune" / provenance["data"]["finetune"]["key"] /
                           "manifest.json").read_text())
    assert manifest["device"] == "cpu"
    if not torch.cuda.is_available():  # a GPU request where there is none: one line, exit 2, nothing trained
        assert main(["--quiet", "evaluate", str(run), "--device", "cuda"]) == 2
