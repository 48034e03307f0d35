"""The benchmark suites still run: every group once, at tiny sizes, untimed (`--quick --benchmark-disable`).

The benchmarks are not collected by the unit tests, so without this a change to a stage could break
`affbench bench` unnoticed until someone profiles.
"""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_benchmark_suite_runs_at_quick_sizes(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCHMARKS), "--quick", "--benchmark-disable", "-q",
         "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'bench'}"],
        capture_output=True, text=True, timeout=600, cwd=BENCHMARKS.parent,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
