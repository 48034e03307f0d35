"""`affbench --help` and `affbench list` stay light: building the parser imports neither torch nor numpy, and
`list` loads the plugins (what it shows) but not torch. Their time is measured in benchmarks/test_startup.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, sys
from affbench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
HEAVY = ["torch", "numpy", "yaml", "timm", "open_clip", "sklearn", "matplotlib", "cv2", "av", "affbench_plugins"]


@pytest.mark.parametrize(("argv", "allowed"), [
    (["--help"], []),
    (["cache", "--help"], []),
    (["suite", "--help"], []),
    (["list"], ["affbench_plugins", "numpy"]),  # the plugins it lists (their dataset readers use numpy)
])
def test_help_and_list_import_no_heavy_module(argv, allowed):
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout
    assert set(json.loads(out.splitlines()[-1])) <= set(allowed)
