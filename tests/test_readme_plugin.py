"""The README's example third-party plugin, installed as pip would install it, works as the README says."""

import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from plugin_install import install_package

import affbench
from affbench.cli import main
from affbench.core import registry as registry_module

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example():
    """(module source, pyproject text) of the example package in the README."""
    text = README.read_text()
    python = re.search(r"```python\n(# affbench_mean_colour/__init__.py\n.*?)```", text, re.S)
    toml = re.search(r"```toml\n(# pyproject.toml of that package\n.*?)```", text, re.S)
    assert python and toml, "README lost its example plugin"
    return python.group(1), toml.group(1)


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    source, pyproject_text = readme_example()
    project = tomllib.loads(pyproject_text)["project"]
    site = install_package(tmp_path / "site", project, {"affbench_mean_colour/__init__.py": source})
    monkeypatch.syspath_prepend(str(site))
    registry_module.reset_registry()
    yield
    sys.modules.pop("affbench_mean_colour", None)
    registry_module.reset_registry()


def test_readme_plugin_is_listed_and_builds(installed_example, capsys):
    assert main(["list", "backbone"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if " mean_colour " in f" {x} ")
    assert "mean_colour 1.0.0" in line
    backbone = affbench.create("backbone", "mean_colour", image_size=64)
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = backbone(images)
    assert out.shape == (2, backbone.out_dim)
    out.sum().backward()
    assert backbone.scale.grad is not None
    assert backbone.preprocess.image_size == 64


def _readme_block(language: str, first_line: str) -> str:
    found = re.search(rf"```{language}\n({re.escape(first_line)}\n.*?)```", README.read_text(), re.S)
    assert found, f"README lost its block starting {first_line!r}"
    return found.group(1)


def test_readme_task_example_is_the_example_package():
    package = README.parent / "examples" / "affbench-valence-sign"
    for language, relative in (("python", "affbench_valence_sign/__init__.py"), ("toml", "pyproject.toml")):
        text = (package / relative).read_text()
        assert _readme_block(language, text.splitlines()[0]) == text, relative


def test_readme_task_example_configs_load_with_the_package_installed(tmp_path, monkeypatch):
    from affbench.core.config import load_config
    from affbench.suite import load_suite

    package = README.parent / "examples" / "affbench-valence-sign"
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    init = "affbench_valence_sign/__init__.py"
    monkeypatch.syspath_prepend(str(install_package(tmp_path / "site", project, {init: (package / init).read_text()})))
    registry_module.reset_registry()
    try:
        for name in ("valence_sign.yaml", "valence_sign_suite.yaml"):
            (tmp_path / name).write_text(_readme_block("yaml", f"# {name}"))
        config = load_config(tmp_path / "valence_sign.yaml")
        assert config["task"] == {"name": "valence_sign", "options": {}}
        assert config["data"]["dataset"]["name"] == "synthaffect"
        assert load_suite(tmp_path / "valence_sign_suite.yaml").name == "valence_sign"
    finally:
        sys.modules.pop("affbench_valence_sign", None)
        registry_module.reset_registry()
