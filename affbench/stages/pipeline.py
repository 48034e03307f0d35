"""Stage chaining: from a config and a fold to the window shards stage 3 trains on.

``prepare_window_shards`` runs (or finds in the cache) the fine-tune when ``finetune.enabled``, the feature
extraction, and the window shards of the fold's train and validation videos. Every step is keyed by its
inputs, so the rows of a suite that share a backbone and fold share one fine-tune and one extraction, and
the three tasks share the features of a backbone that was not fine-tuned.

Under ``train.select: inner`` a seeded slice of the fold's training videos becomes a third split,
``selection``, cut from the same features: stage 3 does not train on it and picks its epoch on it, and the
fine-tune of stage 1 leaves it out too (`affbench.stages.finetune.finetune_frames`), so the slice scores a
model that never saw it, as the validation videos do. Stage 2 extracts it like any other video.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affbench.core.config import Config, as_config
from affbench.data.records import VideoRecord
from affbench.data.window_shards import build_window_shards
from affbench.multitask import training_repeats
from affbench.stages import distributed
from affbench.stages.extract import extract_features
from affbench.stages.stage_inputs import StageInputs, load_stage_inputs, selection_spec

SPLITS = ("train", "validation")
SELECTION = "selection"


@dataclasses.dataclass
class WindowData:
    """The window shards of one config and fold, with what produced them."""

    train_dir: Path
    validation_dir: Path
    feature_dim: int
    provenance: dict = dataclasses.field(default_factory=dict)
    fold_manifest: dict | None = None
    selection_dir: Path | None = None  # held-out training videos (train.select: inner)

    @property
    def dirs(self) -> dict[str, Path]:
        dirs = {"train": self.train_dir, "validation": self.validation_dir}
        if self.selection_dir is not None:
            dirs[SELECTION] = self.selection_dir
        return dirs


def split_dir(data: WindowData, split: str) -> Path:
    """The window-shard directory of `split` ("train" | "selection" | "validation")."""
    directory = data.dirs.get(split)
    if directory is not None:
        return Path(directory)
    if split == SELECTION:
        raise ValueError(f"train.select is 'inner' but the window data {data!r} has no 'selection' split (held-out "
                         "training videos; prepare_window_shards builds it); set train.select to last or validation")
    raise AttributeError(f"window data {data!r} has no '{split}' shard directory")


def expected_provenance(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a config's window shards must have been built with: task, windowing and missing-face policy."""
    data = config["data"]
    return {"task": {"name": config["task"]["name"]}, "window": data["window"], "stride": data["stride"],
            "missing_faces": {"policy": data["missing_faces"]}}


def open_window_shards(config: Mapping[str, Any], data: WindowData, split: str):
    """The window shards of `split` (a WindowShards), refused when their manifest was built for another config."""
    from affbench.data.window_shards import WindowShards

    return WindowShards(split_dir(data, split), expect=expected_provenance(config))


def window_data(config: Config, *, fold: int | None, quiet: bool, data: WindowData | None = None) -> WindowData:
    """The config's window shards (`data` when the caller already has them), stages 1 and 2 run (or found in the
    cache) by every rank together."""
    if data is not None:
        return data
    # Under torchrun every rank takes part: stage 1 is data-parallel, stage 2 shares the videos out.
    return prepare_window_shards(config, fold=fold, quiet=quiet or not distributed.init_distributed().is_main)


def build_model(config: Config, feature_dim: int):
    """The stage-3 model: no backbone, `feature_dim`-wide features in."""
    from affbench.model import create_model

    return create_model({**config.to_dict(), "backbone": None, "feature_dim": int(feature_dim)})


def stage3_records(config: Mapping[str, Any], inputs: StageInputs) -> dict[str, list[VideoRecord]]:
    """The records of each stage-3 split: train and validation, plus selection under train.select: inner."""
    spec = selection_spec(config, inputs)
    if spec is None:
        return {"train": list(inputs.train), "validation": list(inputs.validation)}
    held = set(spec["videos"])
    return {"train": [r for r in inputs.train if r.video not in held],
            SELECTION: [r for r in inputs.train if r.video in held],
            "validation": list(inputs.validation)}


def prepare_window_shards(config: Mapping[str, Any] | str | Path, *, fold: int | None,
                          quiet: bool = False) -> WindowData:
    """Fine-tune (if enabled), extract and cut windows for `fold` (None: official split), reusing caches."""
    config = as_config(config)
    started = time.perf_counter()
    distributed.init_distributed(config["device"])  # under torchrun the ranks share stages 1 and 2 out
    with distributed.main_first():  # rank 0 first: a dataset generated on first use is generated once
        inputs = load_stage_inputs(config, fold)
    selection = selection_spec(config, inputs)  # before any stage runs: too few videos fail at once
    features = extract_features(config, fold=fold, quiet=quiet, inputs=inputs)
    dirs: dict[str, Path] = {}
    manifests: dict[str, dict] = {}
    for split, records in stage3_records(config, inputs).items():
        # The validation shards do not depend on the selection: every mode shares them.
        shaped = selection if split != "validation" else None
        # A multi-task model's training mix repeats the videos of tasks with fewer videos (the sampling rule).
        repeats = training_repeats(config, records) if split == "train" else None
        with distributed.main_first():  # rank 0 writes the window shards; the other ranks find them complete
            dirs[split], manifests[split] = build_window_shards(config, inputs, features, split, quiet=quiet,
                                                                records=records, selection=shaped,
                                                                repeats=repeats)
    fold_manifest = {
        "task": inputs.task,
        "dataset": inputs.dataset_provenance,
        **inputs.fold_info,
        **({} if selection is None else {SELECTION: selection}),
    }
    provenance = {
        "dataset": inputs.dataset_provenance,
        "task": inputs.task,
        "fold": {k: v for k, v in inputs.fold_info.items() if k not in SPLITS},
        "select": {"mode": config["train"]["select"], **(selection or {})},
        "backbone": features.identity,
        "feature_key": features.key,
        "features_dir": str(features.directory),
        "finetune": None if features.finetune is None else {
            k: features.finetune[k] for k in ("key", "weights_id", "frames_per_epoch", "history", "options")},
        "window_shards": {split: str(d) for split, d in dirs.items()},
        "missing_faces": {split: m["provenance"]["missing_faces"] for split, m in manifests.items()},
        "counts": {split: m["counts"] for split, m in manifests.items()},
        "extracted_frames": features.extracted_frames,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return WindowData(dirs["train"], dirs["validation"], features.feature_dim, provenance, fold_manifest,
                      selection_dir=dirs.get(SELECTION))
