"""Stage chaining: from a config and a fold to the window shards stage 3 trains on.

``prepare_window_shards`` runs (or finds in the cache) the fine-tune when ``finetune.enabled``, the feature
extraction, and the window shards of the fold's train and validation videos. Every step is keyed by its
inputs, so the rows of a suite that share a backbone and fold share one fine-tune and one extraction, and
the three tasks share the features of a backbone that was not fine-tuned.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affbench.train.config import as_config
from affbench.train.extract import build_window_shards, extract_features
from affbench.train.stage_inputs import load_stage_inputs

SPLITS = ("train", "validation")


@dataclasses.dataclass
class WindowData:
    """The window shards of one config and fold, with what produced them."""

    train_dir: Path
    validation_dir: Path
    feature_dim: int
    provenance: dict
    fold_manifest: dict

    @property
    def dirs(self) -> dict[str, Path]:
        return {"train": self.train_dir, "validation": self.validation_dir}


def prepare_window_shards(config: Mapping[str, Any] | str | Path, *, fold: int | None,
                          quiet: bool = False) -> WindowData:
    """Fine-tune (if enabled), extract and cut windows for `fold` (None: official split), reusing caches."""
    config = as_config(config)
    started = time.perf_counter()
    inputs = load_stage_inputs(config, fold)
    features = extract_features(config, fold=fold, quiet=quiet, inputs=inputs)
    dirs: dict[str, Path] = {}
    manifests: dict[str, dict] = {}
    for split in SPLITS:
        dirs[split], manifests[split] = build_window_shards(config, inputs, features, split, quiet=quiet)
    fold_manifest = {
        "task": inputs.task,
        "dataset": inputs.dataset_provenance,
        **inputs.fold_info,
    }
    provenance = {
        "dataset": inputs.dataset_provenance,
        "task": inputs.task,
        "fold": {k: v for k, v in inputs.fold_info.items() if k not in SPLITS},
        "backbone": features.identity,
        "feature_key": features.key,
        "features_dir": str(features.directory),
        "finetune": None if features.finetune is None else {
            k: features.finetune[k] for k in ("key", "weights_id", "frames_per_epoch", "history", "options")},
        "window_shards": {split: str(dirs[split]) for split in SPLITS},
        "missing_faces": {split: manifests[split]["provenance"]["missing_faces"] for split in SPLITS},
        "counts": {split: manifests[split]["counts"] for split in SPLITS},
        "extracted_frames": features.extracted_frames,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return WindowData(dirs["train"], dirs["validation"], features.feature_dim, provenance, fold_manifest)
