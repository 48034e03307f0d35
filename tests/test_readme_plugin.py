"""The README's example third-party plugin, installed as pip would install it, works as the README says."""

import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch

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
    site = tmp_path / "site"
    (site / "affbench_mean_colour").mkdir(parents=True)
    (site / "affbench_mean_colour" / "__init__.py").write_text(source)
    info = site / f"affbench_mean_colour-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    eps = "\n".join(f"{k} = {v}" for k, v in project["entry-points"]["affbench"].items())
    (info / "entry_points.txt").write_text(f"[affbench]\n{eps}\n")
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
