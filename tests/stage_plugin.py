"""Fixtures of the stage 1-2, pipeline and suite tests (loaded with ``pytest_plugins = ["stage_plugin"]``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import affbench


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """SynthAffect tiny, generated once per test session."""
    root = tmp_path_factory.mktemp("synthaffect-tiny")
    affbench.create("dataset", "synthaffect", size="tiny", seed=0, root=str(root), quiet=True).prepare()
    return root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty affbench cache for one test."""
    monkeypatch.setenv("AFFBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"

