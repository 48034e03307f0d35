"""Every test session gets its own empty affbench home: `pytest` never reads or fills the user's cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_affbench_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AFFBENCH_HOME", str(tmp_path_factory.mktemp("affbench-home")))
        patch.setenv("MPLBACKEND", "Agg")
        yield
