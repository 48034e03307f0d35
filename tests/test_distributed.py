"""Two-process DDP on CPU (gloo): uneven shards do not hang, gathered metrics equal a single-process evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trainer_fixtures import write_tiny_data

from affbench.data.window_shards import WindowShards
from affbench.stages.evaluate import evaluate

SCRIPT = Path(__file__).resolve().parent / "trainer_fixtures.py"


def test_two_process_gloo_matches_single_process_evaluation(tmp_path):
    data = write_tiny_data(tmp_path / "data", "va")
    shards = WindowShards(data.train_dir)
    counts = [s.count for s in shards.shards]
    assert len(counts) % 2 == 1  # an odd number of shards: the two ranks get unequal numbers of windows
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
         str(tmp_path / "data"), str(tmp_path / "out"), "--set", '{"epochs": 2}',
         "--result-dir", str(tmp_path / "results")],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / "results" / f"result.rank{r}.json").read_text()) for r in (0, 1)]
    assert len(results) == 2 and results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["world_size"] == 2
    run_dir = tmp_path / "out" / "va" / "tiny_va" / "fold0"
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["metrics"] == results[0]["metrics"]
    single = evaluate(run_dir / "best.pt", data=data, quiet=True)
    assert single["metrics"]["frames"] == written["metrics"]["frames"]
    for key in ("valence", "arousal", "mean"):
        assert single["metrics"][key] == pytest.approx(written["metrics"][key], rel=1e-6, abs=1e-7)
    # Only rank 0 wrote: one metrics row per epoch, no stray temporary files.
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
