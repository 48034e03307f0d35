"""A run folder's checkpoints checked against the folder they sit in, and the best checkpoint of a run.

* ``checkpoint_config``: the config a checkpoint was trained with, from the checkpoint (best.pt, and last.pt
  since it records it) or else from ``config.resolved.yaml`` beside it; a checkpoint whose config differs from
  the run folder's (a file copied from another run) is refused rather than scored under the folder's name.
* ``load_best_checkpoint``: a run's ``best.pt``, refused when it does not hold the run's best epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from affbench.core.config import config_digest, resolve
from affbench.stages.checkpoints import CheckpointError, load_checkpoint

RESOLVED_CONFIG = "config.resolved.yaml"
# The sections that make two runs the same run (the trainer's resume check uses the same ones).
RUN_SECTIONS = ("task", "data", "model", "train")


def checkpoint_config(checkpoint: str | Path, ckpt: Mapping[str, Any]):
    """The resolved config of `checkpoint`; CheckpointError when it has none or contradicts its run folder."""
    checkpoint = Path(checkpoint)
    beside = checkpoint.parent / RESOLVED_CONFIG
    folder_config = None
    if beside.is_file():
        folder_config = resolve(yaml.safe_load(beside.read_text(encoding="utf-8")), path=str(beside))
    if "config" not in ckpt:
        if folder_config is None:
            raise CheckpointError(f"{checkpoint}: holds no config and no {RESOLVED_CONFIG} lies beside it; pass "
                                  "the run's config with --config")
        return folder_config
    config = resolve(ckpt["config"], path=f"{checkpoint}:config")
    if folder_config is not None and config_digest(config, RUN_SECTIONS) != config_digest(folder_config,
                                                                                          RUN_SECTIONS):
        raise CheckpointError(
            f"{checkpoint}: trained with another config than its run folder's {beside} (task/data/model/train "
            "differ); it was copied from another run: evaluate it in its own folder, or pass --config")
    return config


def load_best_checkpoint(best_path: Path, best_epoch: int) -> dict:
    """The run's best.pt, refused (CheckpointError naming it) when unreadable or not of its best epoch."""
    best = load_checkpoint(best_path)
    if best.get("epoch") != best_epoch:
        raise CheckpointError(f"{best_path}: holds epoch {best.get('epoch')!r} but the run's best epoch is "
                              f"{best_epoch}; delete the run folder and train again")
    return best
