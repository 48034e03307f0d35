"""Checkpoints: atomic writes of plain state dicts, safe loads, and the RNG states a bitwise resume needs.

A checkpoint holds tensors, numbers, strings, lists and dicts only, so it loads with ``weights_only=True``
(no unpickling of arbitrary objects) and survives refactors of the model classes. It is written to a
temporary file in the same directory, fsynced, and moved into place with ``os.replace``, so a crash
mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affbench.output import open_atomic

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or of another format; names the file."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically (temporary file, fsync, os.replace: see affbench.output)."""
    payload = {"format": "affbench-checkpoint", "version": FORMAT_VERSION, **state}
    with open_atomic(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or corrupt file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle opcodes, disallowed globals ...
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an affbench checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it or point to another file"
        ) from None
    if not isinstance(state, dict) or state.get("format") != "affbench-checkpoint":
        raise CheckpointError(f"checkpoint {path} is not an affbench checkpoint (no 'format' marker)")
    if state.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {state['version']}; this affbench reads "
                              f"up to {FORMAT_VERSION}")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state (python, numpy, torch CPU and CUDA) as weights_only-loadable values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel (state dicts are saved without the ``module.`` prefix)."""
    return getattr(model, "module", model)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state dict (DDP unwrapped)."""
    return {k: v.detach().cpu().clone() for k, v in unwrap_model(model).state_dict().items()}
