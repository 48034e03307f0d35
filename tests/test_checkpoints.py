"""Checkpoints: atomic weights-only files, clear errors for corrupt ones, RNG state round trip."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from affbench.stages.checkpoints import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from affbench.stages.schedule import lr_factor


def test_round_trip_and_no_temporary_files_left(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint({"model": model.state_dict(), "step": 5, "history": [{"loss": 0.5}]},
                           tmp_path / "ckpt" / "last.pt")
    state = load_checkpoint(path)
    assert state["step"] == 5 and state["history"] == [{"loss": 0.5}]
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_corrupt_truncated_and_missing_name_the_file(tmp_path):
    path = save_checkpoint({"model": torch.nn.Linear(8, 8).state_dict()}, tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{path} is corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"format": "affbench-checkpoint", "version": 1, "model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an affbench checkpoint"):
        load_checkpoint(path)


def test_interrupted_write_keeps_previous(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "last.pt")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_rng_state_survives_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_lr_schedule_warmup_then_cosine():
    factors = [lr_factor(s, total_steps=10, warmup_steps=2, schedule="cosine") for s in range(10)]
    assert factors[0] == 0.5 and factors[1] == 1.0 and factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:], strict=False)) and factors[-1] > 0
    assert lr_factor(5, total_steps=10, warmup_steps=0, schedule="constant") == 1.0
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor(0, total_steps=1, warmup_steps=0, schedule="step")
