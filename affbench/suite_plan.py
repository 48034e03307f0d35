"""A suite as a list of independent jobs: the shared stages (stage 1 fine-tunes, stage 2 extractions) and the
runs that need them, each with the command that runs it alone and the cache entries it reads or writes.

``affbench suite NAME --plan`` prints these as JSON lines for any scheduler; ``--launcher submitit`` submits
them (affbench.suite_launch). Stage jobs come first: a run only reads the caches its stage job filled, so a
scheduler that runs every stage line before the run lines that name it never fine-tunes or extracts twice.

Computing the keys runs no stage: it opens the dataset (to know the fold's videos) and builds each distinct
backbone once, because the keys name the backbone's ``weights_id`` (an attribute of the built module: a
pretrained tag, a file's sha256 or a random seed); no frame goes through it. The features of a fine-tuned
backbone are keyed by the sha256 of the fine-tuned weights, known only once stage 1 has run: until then the
plan gives their key as null and names the fine-tune they follow.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affbench.suite import Suite, plan_runs, run_overrides, seed_out_dir, suite_overrides


@dataclasses.dataclass
class PlannedRun:
    """One (config, fold, seed) of a suite: what runs it alone and which stage entries it needs."""

    config: Any
    fold: int
    seed: int | None
    overrides: dict[str, Any]  # the dotted overrides the suite applied to the config file
    run_dir: Path
    out_dir: Path  # the runs root its command writes under (OUT, or OUT/seed<s>)
    finetune_key: str | None  # None: the row does not fine-tune
    feature_key: str | None  # None: not known before stage 1 has run (see the module notes), or no backbone
    stage: str | None  # the id of the stage job that fills its caches (None: a row without a backbone)

    @property
    def row(self) -> str:
        return str(self.config["name"])

    @property
    def task(self) -> str:
        return str(self.config["task"]["name"])

    def command(self) -> list[str]:
        """The command that trains this run alone (it resumes from the run folder's last.pt)."""
        return ["affbench", "train", str(self.config.path), "--fold", str(self.fold), "--out", str(self.out_dir),
                "--resume", *_set_args(self.overrides)]

    def line(self) -> dict[str, Any]:
        return {"kind": "run", "row": self.row, "task": self.task, "fold": self.fold, "seed": self.seed,
                "train_seed": int(self.config["train"]["seed"]), "run_dir": str(self.run_dir),
                "command": shlex.join(self.command()), "needs": [self.stage] if self.stage else [],
                "finetune_key": self.finetune_key, "feature_key": self.feature_key}


@dataclasses.dataclass
class StageJob:
    """One distinct stage-2 entry (with its fine-tune): filled once, before every run that reads it.

    Its `runs` are one representative per task: the features directory is shared by the tasks, but each task
    extracts its own videos into it (one after the other in this job, so no two processes write one video).
    """

    id: str
    finetune_key: str | None
    feature_key: str | None
    runs: list[PlannedRun] = dataclasses.field(default_factory=list)

    def commands(self) -> list[list[str]]:
        return [["affbench", "extract", str(r.config.path), "--fold", str(r.fold), *_set_args(r.overrides)]
                for r in self.runs]

    def line(self) -> dict[str, Any]:
        return {"kind": "stage", "id": self.id, "finetune_key": self.finetune_key, "feature_key": self.feature_key,
                "tasks": [r.task for r in self.runs], "commands": [shlex.join(c) for c in self.commands()]}


@dataclasses.dataclass
class SuitePlan:
    stages: list[StageJob]
    runs: list[PlannedRun]

    def lines(self) -> list[dict[str, Any]]:
        """Every stage, then every run, in an order any scheduler can follow (a line's needs come before it)."""
        return [s.line() for s in self.stages] + [r.line() for r in self.runs]


def _set_args(overrides: Mapping[str, Any]) -> list[str]:
    # JSON is YAML: `--set` reads the value back exactly (mappings such as data.dataset included).
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def plan_suite(suite: Suite, out_dir: str | Path, *, folds: str | None = None, data: str | None = None,
               root: str | Path | None = None, device: str | None = None) -> SuitePlan:
    """Every run of `suite` with its stage entries, and the distinct stage jobs (in first-needed order)."""
    from affbench.stages.run_dir import run_dir_path

    extra = suite_overrides(data, root, device)
    keys = _StageKeys()
    stages: dict[str, StageJob] = {}
    runs: list[PlannedRun] = []
    for config, fold, seed in plan_runs(suite, folds=folds, overrides=extra):
        run_out = seed_out_dir(out_dir, seed)
        finetune_key, feature_key = keys.of(config, fold)
        stage_id = (f"features:{feature_key}" if feature_key else f"finetune:{finetune_key}" if finetune_key
                    else None)
        run = PlannedRun(config, fold, seed, run_overrides(suite, seed, extra), run_dir_path(run_out, config, fold),
                         run_out, finetune_key, feature_key, stage_id)
        runs.append(run)
        if stage_id is not None:
            job = stages.setdefault(stage_id, StageJob(stage_id, finetune_key, feature_key))
            if run.task not in {r.task for r in job.runs}:
                job.runs.append(run)
    return SuitePlan(list(stages.values()), runs)


class _StageKeys:
    """The stage 1 and 2 keys of (config, fold), with each backbone built once and each fold opened once."""

    def __init__(self) -> None:
        self._backbones: dict[str, Any] = {}

    def _backbone(self, spec: Mapping[str, Any]):
        from affbench.stages.finetune import build_backbone

        text = json.dumps(spec, sort_keys=True, default=str)
        if text not in self._backbones:
            self._backbones[text] = build_backbone(spec)
        return self._backbones[text]

    def of(self, config: Any, fold: int) -> tuple[str | None, str | None]:
        """(fine-tune key or None, feature key or None while the fine-tune it follows has not run)."""
        from affbench.stages import feature_cache as cache
        from affbench.stages.finetune import WEIGHTS_FILE, finetune_frames, finetune_key, finetuned_weights_id
        from affbench.stages.stage_inputs import load_stage_inputs

        if config.get("backbone") is None:
            return None, None
        spec = config["backbone"]
        backbone = self._backbone(spec)
        inputs = load_stage_inputs(config, fold)
        weights_id = str(backbone.weights_id)
        tuned = None
        if config["finetune"]["enabled"]:
            tuned = finetune_key(config, inputs, finetune_frames(config, inputs), backbone)
            weights = cache.stage_dir("finetune", tuned) / WEIGHTS_FILE
            if cache.read_manifest(weights.parent) is None or not weights.is_file():
                return tuned, None
            weights_id = finetuned_weights_id(weights)
        identity = cache.backbone_identity(spec, weights_id, backbone.preprocess)
        return tuned, cache.feature_key(inputs.dataset_provenance, identity)
