"""A run SIGKILLed mid-epoch and resumed ends with parameters bitwise identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from trainer_fixtures import KILL_AFTER_STEP_ENV, write_tiny_data

from affbench.stages.checkpoints import load_checkpoint

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "trainer_fixtures.py"


def run(data: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(data), str(out), "--set",
                           '{"epochs": 3, "checkpoint_every": 3}', *extra],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def test_killed_run_resumes_bitwise(tmp_path):
    data_dir = tmp_path / "data"
    write_tiny_data(data_dir, "va")
    # 5 steps per epoch: step 8 is mid-epoch 2, two steps after the checkpoint at step 6 (steps 7-8 are redone).
    killed = run(data_dir, tmp_path / "killed", env={KILL_AFTER_STEP_ENV: "8"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = Path("va") / "tiny_va" / "fold0"
    mid = load_checkpoint(tmp_path / "killed" / run_dir / "last.pt")
    assert mid["state"]["step"] == 8 - 2 and mid["state"]["batch"] == 1
    resumed = run(data_dir, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    straight = run(data_dir, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    a = load_checkpoint(tmp_path / "killed" / run_dir / "last.pt")
    b = load_checkpoint(tmp_path / "straight" / run_dir / "last.pt")
    assert a["state"]["step"] == b["state"]["step"] == 15
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["state"]["history"] == [
        {**row, "seconds": a["state"]["history"][i]["seconds"],
         "windows_per_s": a["state"]["history"][i]["windows_per_s"]}
        for i, row in enumerate(b["state"]["history"])
    ]
    # The report (train.select: inner picks the epoch, validation scored at the end) is the same too.
    reported = [json.loads((tmp_path / side / run_dir / "metrics.json").read_text()) for side in ("killed", "straight")]
    for key in ("best_epoch", "metrics", "last", "selection", "thresholds"):
        assert reported[0][key] == reported[1][key], key
    csv_rows = (tmp_path / "killed" / run_dir / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 3  # header + one row per epoch, none duplicated by the resume
