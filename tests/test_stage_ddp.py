"""Stages 1 and 2 under torchrun: two gloo processes on CPU against one process on SynthAffect tiny."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from stage_fixtures import TinyNet

from affbench.stages.feature_cache import load_video_features

pytest_plugins = ["stage_plugin"]

SCRIPT = Path(__file__).resolve().parent / "stage_ddp_script.py"


def _torchrun(n: int, synth_root: Path, stage: str, home: Path, results: Path, top: dict) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), str(SCRIPT),
         str(synth_root), stage, str(results), json.dumps(top)],
        env={**env, "OMP_NUM_THREADS": "1", "AFFBENCH_HOME": str(home), "AFFBENCH_DEVICE": "cpu"},
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((results / f"rank{r}.json").read_text()) for r in range(n)]


def test_two_process_finetune_matches_one_process_with_the_same_global_batch(synth_root, tmp_path):
    # Global batch 96 > the 48 frames: one step per epoch over every frame, 48 per rank under 2 processes.
    top = {"finetune": {"epochs": 2, "batch_size": 96, "max_frames": 48}}
    one = _torchrun(1, synth_root, "finetune", tmp_path / "home1", tmp_path / "r1", top)
    two = _torchrun(2, synth_root, "finetune", tmp_path / "home2", tmp_path / "r2", top)
    assert two[0]["world_size"] == 2 and one[0]["world_size"] == 1
    assert two[0]["weights"] == two[1]["weights"] and two[0]["weights_id"] == two[1]["weights_id"]
    # The ranks read disjoint frames that together are the one process's frames.
    assert 0 < two[0]["forwards"] < one[0]["forwards"] and two[0]["forwards"] + two[1]["forwards"] == one[0]["forwards"]
    assert [h["frames"] for h in two[0]["history"]] == [h["frames"] for h in one[0]["history"]] == [48, 48]
    for h1, h2 in zip(one[0]["history"], two[0]["history"], strict=True):
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-4)
    single, parallel = load_file(one[0]["weights"]), load_file(two[0]["weights"])
    assert single.keys() == parallel.keys()
    base = TinyNet().state_dict()  # the weights before stage 1
    for key, value in single.items():
        # Float tolerance: the gradient sums run in another order; an AdamW step moves weights by about lr.
        np.testing.assert_allclose(parallel[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-5, err_msg=key)
        # Well above that tolerance, each tensor moved: the comparison is between trained weights.
        assert np.abs(value.numpy() - base[key].numpy()).max() > 1e-3, key


def test_two_process_extraction_equals_one_process_and_extracts_each_video_once(synth_root, tmp_path):
    top = {"finetune": {"enabled": False}}
    one = _torchrun(1, synth_root, "extract", tmp_path / "home1", tmp_path / "r1", top)
    two = _torchrun(2, synth_root, "extract", tmp_path / "home2", tmp_path / "r2", top)
    # Every frame through the backbone once in all: the ranks' videos are disjoint.
    assert all(r["forwards"] > 0 for r in two)
    assert sum(r["forwards"] for r in two) == one[0]["forwards"] == one[0]["extracted"]
    assert two[0]["extracted"] == two[1]["extracted"] == one[0]["extracted"]  # the total, on every rank
    single, parallel = Path(one[0]["directory"]), Path(two[0]["directory"])
    assert single.name == parallel.name  # the same content key
    files = sorted(p.name for p in single.glob("*.npz"))
    assert files and files == sorted(p.name for p in parallel.glob("*.npz"))
    assert (parallel / "manifest.json").is_file()
    for name in files:
        video = name[:-4]
        images1, feats1, stamps1 = load_video_features(single, video)
        images2, feats2, stamps2 = load_video_features(parallel, video)
        assert images1 == images2 and np.array_equal(stamps1, stamps2)
        np.testing.assert_allclose(feats2.astype(np.float32), feats1.astype(np.float32), rtol=0, atol=1e-3)
