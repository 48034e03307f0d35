"""Stage 1: fine-tune the image backbone with new fully connected layers on frame labels of one fold.

All parameters of the backbone and the new layers are updated with AdamW on the task's own masked loss. With
``finetune.batchnorm: frozen`` the backbone's BatchNorm layers stay in eval mode: they keep their pretrained
running statistics, which a short fine-tune with small batches would otherwise overwrite (the default, ``train``,
re-estimates them).
Only the fold's training videos are used (never a validation frame), optionally capped at
``finetune.max_frames`` frames drawn with ``finetune.seed``. Frames are read from cached frame shards and
decoded in DataLoader workers.

The result is cached under ``<cache>/finetune/<key>/`` (key: dataset provenance, task, fold videos, backbone
spec and base weights, preprocessing, every ``finetune`` option): ``backbone.safetensors`` (the backbone's
state dict), ``manifest.json`` (written last) and, while training, ``epoch.pt`` (a checkpoint after every
epoch, from which an interrupted run resumes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from affbench.output import write_bytes_atomic, write_manifest
from affbench.stages import distributed
from affbench.stages import feature_cache as cache
from affbench.stages.augment import augment_images, augments
from affbench.stages.depthwise_grads import tapwise_depthwise_grads
from affbench.stages.frame_batches import batch_to_input, frame_batches, image_model_on
from affbench.stages.multitask_labels import MultiTaskLabels
from affbench.stages.stage_inputs import (
    StageInputs,
    ensure_frame_shards,
    load_stage_inputs,
    select_frames,
    selection_spec,
)

log = logging.getLogger("affbench.finetune")

WEIGHTS_FILE = "backbone.safetensors"
EPOCH_CHECKPOINT = "epoch.pt"
# The new fully connected layers: one hidden layer between the backbone feature and the task outputs.
HEAD_HIDDEN = 256
HEAD_DROPOUT = 0.1


@dataclasses.dataclass
class FinetuneResult:
    """Where the fine-tuned backbone weights are and what identifies them."""

    directory: Path
    weights_path: Path
    weights_id: str
    manifest: dict
    reused: bool


def build_backbone(spec: Mapping[str, Any]) -> nn.Module:
    """The backbone of a {name, options} spec, checked against the backbone contract."""
    import affbench

    backbone = affbench.create("backbone", spec["name"], **spec["options"])
    for attr in ("out_dim", "preprocess", "weights_id"):
        if not hasattr(backbone, attr):
            raise TypeError(f"backbone '{spec['name']}' has no '{attr}'; a backbone factory must return an "
                            "nn.Module with out_dim, preprocess and weights_id")
    return backbone


def finetune_task_specs(config: Mapping[str, Any]) -> list[dict]:
    """The tasks stage 1 learns from: ``finetune.tasks``, or the row's own task when that is null."""
    tasks = config["finetune"].get("tasks")
    return list(tasks) if tasks else [config["task"]]


@dataclasses.dataclass
class FinetuneFrames:
    """What stage 1 trains on: merged multi-task records of the fold's training videos, and what chose them."""

    records: list
    n_frames: int
    labels: MultiTaskLabels
    fold: dict


def finetune_frames(config: Mapping[str, Any], inputs: StageInputs) -> FinetuneFrames:
    """The training frames of every task stage 1 learns from, never a video the row or those tasks validate or
    select epochs on.

    K-fold splits are shared by the tasks (`affbench.data.folds.task_folds`), so for a fold this only unites
    the tasks' training videos; on the official split a video that one task validates on is left out for all.
    """
    import affbench

    specs = finetune_task_specs(config)
    fold = inputs.fold
    per_task = [inputs if s["name"] == inputs.task else load_stage_inputs(config, fold, task=s["name"])
                for s in specs]
    held_out = set(inputs.fold_info["validation"]).union(*(set(p.fold_info["validation"]) for p in per_task))
    # Under train.select: inner each task's selection slice stays unseen too: its score picks the epoch and
    # tunes AU thresholds, which only generalise if the slice is as new to the backbone as validation is.
    for p in per_task:
        held_out.update((selection_spec(config, p) or {"videos": ()})["videos"])
    chosen = [{r.video: r for r in p.train if r.video not in held_out} for p in per_task]
    labels = MultiTaskLabels([affbench.create("task", s["name"], **s["options"]) for s in specs])
    records, n_frames = _training_records(labels.merge(chosen), config["finetune"]["max_frames"],
                                          int(config["finetune"]["seed"]), what=inputs.task)
    # What chose the videos, never what only the row's task has (its faceless videos, its selection slice):
    # rows of every task that ask for this fine-tune must find the same key.
    info = {k: inputs.fold_info[k] for k in ("fold", "k", "seed", "split", "split_over_tasks") if k in inputs.fold_info}
    info["train"] = sorted({v for c in chosen for v in c})
    return FinetuneFrames(records, n_frames, labels, info)


def finetune_key(config: Mapping[str, Any], inputs: StageInputs, frames: FinetuneFrames, backbone: nn.Module) -> str:
    """Cache key of one fine-tune: everything that determines the weights it produces.

    It names the tasks learnt and the training videos, not the row's task: rows of every task that ask for the
    same fine-tune share one.
    """
    spec = config["backbone"]
    options = {k: v for k, v in config["finetune"].items() if k not in ("enabled", "workers", "tasks")}
    return cache.stage_key(
        "finetune",
        dataset=inputs.dataset_provenance,
        tasks=finetune_task_specs(config),
        fold=frames.fold,
        backbone=cache.backbone_identity(spec, backbone.weights_id, backbone.preprocess),
        options=options,
        stamps=inputs.stamps_digest(frames.records),  # a replaced training image trains new weights
    )


def _training_records(records: list, max_frames: int | None, seed: int, *, what: str) -> tuple[list, int]:
    """`records` reduced to frames with an image and a valid label (capped by max_frames)."""
    usable = [(r, r.has_image & np.asarray(r.valid, dtype=bool)) for r in records]
    total = sum(int(keep.sum()) for _, keep in usable)
    if total == 0:
        raise ValueError(f"task '{what}': no training frame has both a face image and a valid label; nothing to "
                         "fine-tune on")
    if max_frames is not None and total > max_frames:
        # One seeded draw over all usable frames, so the subset does not depend on video order or count.
        rng = np.random.default_rng(seed)
        chosen = np.zeros(total, dtype=bool)
        chosen[rng.choice(total, size=max_frames, replace=False)] = True
        out, offset = [], 0
        for record, keep in usable:
            idx = np.flatnonzero(keep)
            sub = np.zeros_like(keep)
            sub[idx[chosen[offset:offset + idx.size]]] = True
            offset += idx.size
            out.append((record, sub))
        usable, total = out, max_frames
    return [select_frames(r, keep) for r, keep in usable if keep.any()], total


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def backbone_threads() -> Iterator[None]:
    """Run the block with torch on every CPU core this process may use and denormals flushed, then restore.

    Stage 3 may lower torch's thread count for its tiny models (train.threads) and that setting is process-wide;
    the backbone stages are convolution-heavy and must not inherit it inside a suite. The count is fixed per
    machine, never adapted to the load: CPU results depend on the thread count, and a cached fine-tune must
    not depend on what else was running.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(cpu_cores())
    # Fine-tuned weights and activations can hold denormal floats, which x86 CPUs process many times slower.
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)


def stage1_gradients(model: nn.Module, config: Mapping[str, Any]) -> contextlib.AbstractContextManager:
    """How stage 1 computes `model`'s gradients: covering depthwise layers summed tap by tap where PyTorch's CPU
    kernel is slow (`affbench.stages.depthwise_grads`), in eager mode only (torch.compile builds its own
    backward)."""
    if config.get("compile"):
        return contextlib.nullcontext()
    return tapwise_depthwise_grads(model)


def compiled(module: nn.Module, config: Mapping[str, Any]) -> nn.Module:
    """`module` through torch.compile when the config's `compile` is true, else `module` itself.

    The compiled module shares `module`'s parameters: weights are saved and loaded through `module` as before.
    """
    if not config.get("compile"):
        return module
    return torch.compile(module)


def load_finetuned(backbone: nn.Module, weights_path: str | Path) -> nn.Module:
    """Load fine-tuned weights (a safetensors state dict) into `backbone`; every key must match."""
    from safetensors.torch import load_file

    state = load_file(str(weights_path))
    backbone.load_state_dict(state, strict=True)
    return backbone


def finetuned_weights_id(weights_path: str | Path) -> str:
    """Identity of fine-tuned weights: the sha256 of the weights file."""
    return "sha256:" + cache.file_sha256(weights_path)


def seeded_backbone(config: Mapping[str, Any]) -> nn.Module:
    """The config's backbone as built, torch seeded with ``finetune.seed`` first: every layer the factory
    initialises at random (and the new head drawn after it) is the same in every run that fine-tunes it."""
    torch.manual_seed(int(config["finetune"]["seed"]))
    return build_backbone(config["backbone"])


def finetune(config: Mapping[str, Any], *, fold: int | None, quiet: bool = False,
             inputs: StageInputs | None = None, backbone: nn.Module | None = None) -> FinetuneResult:
    """Fine-tune the config's backbone on `fold`'s training frames, or reuse the cached result.

    `backbone` is the one the caller goes on with (built by `seeded_backbone`, so that it is built once per
    extraction); it is trained in place. Without it one is built here.
    """
    if config.get("backbone") is None:
        raise ValueError("finetune: config key backbone is null; stage 1 needs an image backbone")
    inputs = inputs or load_stage_inputs(config, fold)
    if backbone is None:
        backbone = seeded_backbone(config)
    frames = finetune_frames(config, inputs)
    key = finetune_key(config, inputs, frames, backbone)
    directory = cache.stage_dir("finetune", key)
    weights_path = directory / WEIGHTS_FILE
    manifest = cache.read_manifest(directory)
    if manifest is not None and weights_path.is_file():
        return FinetuneResult(directory, weights_path, manifest["weights_id"], manifest, reused=True)
    run = _FinetuneRun(config, inputs, frames, backbone, directory, quiet=quiet)
    history = run.train()
    if not run.info.is_main:  # rank 0 writes the weights and the manifest; the others return what it wrote
        distributed.barrier()
        manifest = distributed.broadcast_object(None)
        return FinetuneResult(directory, weights_path, manifest["weights_id"], manifest, reused=False)
    manifest = run.save(key, weights_path, history)
    distributed.barrier()
    distributed.broadcast_object(manifest)
    return FinetuneResult(directory, weights_path, manifest["weights_id"], manifest, reused=False)


class _FinetuneRun:
    """One fine-tune that its cache entry does not hold yet: frame shards, model and optimizer set up, epochs
    trained (resumed after the last finished one), weights and manifest saved."""

    def __init__(self, config: Mapping[str, Any], inputs: StageInputs, frames: FinetuneFrames, backbone: nn.Module,
                 directory: Path, *, quiet: bool) -> None:
        self.config, self.inputs, self.frames, self.backbone = config, inputs, frames, backbone
        self.directory, self.quiet = directory, quiet
        self.options = options = config["finetune"]
        self.specs = finetune_task_specs(config)
        self.tasks_label = "+".join(s["name"] for s in self.specs)
        with distributed.main_first():  # rank 0 writes the frame shards, the other ranks then find them
            self.shards_dir = ensure_frame_shards(
                frames.records, inputs.dataset, task=self.tasks_label, provenance=inputs.dataset_provenance,
                selection={"stage": "finetune", "fold": frames.fold, "max_frames": options["max_frames"],
                           "seed": int(options["seed"]), "labels": frames.labels.describe()},
                stamps=inputs.stamps_digest(frames.records), preprocess=backbone.preprocess, quiet=quiet,
            )
        self.info = distributed.init_distributed(config["device"])  # one process, or this rank of torchrun's group
        self.device = self.info.device
        head = _new_head(int(backbone.out_dim), int(frames.labels.out_dim))
        self.model = image_model_on(BackboneWithHead({"backbone": backbone, "head": head}), self.device)
        self.trained = _data_parallel(self.model, self.device)
        self.forward = compiled(self.trained, config)
        self.task = frames.labels.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=float(options["lr"]),
                                           weight_decay=float(options["weight_decay"]))
        self.checkpoint_path = directory / EPOCH_CHECKPOINT

    def _resume(self) -> tuple[int, list[dict[str, Any]]]:
        """(epochs already done, their history) from the epoch checkpoint a killed run left, else (0, [])."""
        from affbench.stages.checkpoints import load_checkpoint, restore_rng_state

        if not self.checkpoint_path.is_file():
            return 0, []
        state = load_checkpoint(self.checkpoint_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        if not self.quiet:
            log.info("finetune: resuming %s after epoch %d", self.directory, int(state["epoch"]))
        return int(state["epoch"]), [dict(h) for h in state.get("history", [])]

    def train(self) -> list[dict[str, Any]]:
        """Train the remaining epochs, checkpointing after each; the per-epoch history."""
        from affbench.stages.checkpoints import capture_rng_state, model_state, save_checkpoint

        options, info, device = self.options, self.info, self.device
        start_epoch, history = self._resume()
        self.started = time.perf_counter()
        rank_batch = rank_batch_size(self.config, info.world_size)
        for epoch in range(start_epoch, int(options["epochs"])):
            batches = frame_batches(self.shards_dir, batch_size=rank_batch, workers=int(options["workers"]),
                                    shuffle_seed=int(options["seed"]), epoch=epoch, device=device,
                                    rank=info.rank, world_size=info.world_size)
            with backbone_threads(), stage1_gradients(self.model, self.config):
                loss_sum, seen = _train_epoch(self.trained, self.forward, self.task, self.optimizer, batches,
                                              self.backbone.preprocess, device, self.frames.n_frames,
                                              freeze_batchnorm=options["batchnorm"] == "frozen",
                                              augment=options["augment"] if augments(options["augment"]) else None,
                                              desc=f"finetune {self.tasks_label} fold {self.inputs.fold} "
                                                   f"epoch {epoch + 1}", quiet=self.quiet)
            history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "frames": seen,
                            "seconds": round(time.perf_counter() - self.started, 3)})
            if info.is_main:
                save_checkpoint({"model": model_state(self.model), "optimizer": self.optimizer.state_dict(),
                                 "rng": capture_rng_state(), "epoch": epoch + 1, "history": history},
                                self.checkpoint_path)
        return history

    def save(self, key: str, weights_path: Path, history: list[dict[str, Any]]) -> dict:
        """Write the trained backbone's weights and then the manifest that marks the entry complete."""
        _save_weights(self.model["backbone"], weights_path)
        backbone, inputs = self.backbone, self.inputs
        manifest = {
            "stage": "finetune",
            "key": key,
            "weights_file": WEIGHTS_FILE,
            "weights_id": finetuned_weights_id(weights_path),
            "base": cache.backbone_identity(self.config["backbone"], backbone.weights_id, backbone.preprocess),
            "tasks": self.specs,
            "labels": self.task.describe(),
            "fold": self.frames.fold,
            "dataset": inputs.dataset_provenance,
            "options": dict(self.options),
            "frames_per_epoch": self.frames.n_frames,
            "history": history,
            "seconds": round(time.perf_counter() - self.started, 3),
            "device": str(self.device),
            "compile": bool(self.config.get("compile")),
            "world_size": self.info.world_size,
        }
        write_manifest(self.directory, manifest)
        self.checkpoint_path.unlink(missing_ok=True)
        return manifest


class BackboneWithHead(nn.ModuleDict):
    """The backbone and the new layers as one module with a forward (what DistributedDataParallel wraps); its
    state dict keys are those of the plain ModuleDict (``backbone.*``, ``head.*``)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self["head"](self["backbone"](images))


def rank_batch_size(config: Mapping[str, Any], world_size: int) -> int:
    """Frames per step on each rank: finetune.batch_size is the global batch, shared out over the ranks."""
    batch = int(config["finetune"]["batch_size"])
    if batch % world_size:
        where = config.where("finetune.batch_size") if hasattr(config, "where") else "config"
        raise ValueError(f"{where}: finetune.batch_size: {batch} frames cannot be shared out evenly over "
                         f"{world_size} processes; accepted: a multiple of {world_size}")
    return batch // world_size


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` wrapped in DistributedDataParallel under torchrun, else `model` itself."""
    if not distributed.is_distributed():
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _new_head(in_dim: int, out_dim: int) -> nn.Module:
    from affbench.model import MLPHead

    return MLPHead(in_dim, out_dim, hidden=HEAD_HIDDEN, dropout=HEAD_DROPOUT, norm="none")


def set_train_mode(model: nn.Module, *, freeze_batchnorm: bool) -> None:
    """Put `model` in training mode; with `freeze_batchnorm`, every BatchNorm layer stays in eval mode.

    A BatchNorm layer in eval mode normalises with its pretrained running statistics and never updates them;
    its affine parameters are still trained. In train mode a short fine-tune with small batches would overwrite
    those statistics, and the features extracted afterwards (in eval mode) would all be shifted.
    """
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _train_epoch(model: nn.Module, forward: Any, task: MultiTaskLabels, optimizer: torch.optim.Optimizer,
                 batches: Any, preprocess: Any, device: torch.device, n_frames: int, *, freeze_batchnorm: bool,
                 augment: Mapping[str, Any] | None, desc: str, quiet: bool) -> tuple[float, int]:
    set_train_mode(model, freeze_batchnorm=freeze_batchnorm)
    amp = device.type == "cuda"
    loss_sum, seen = 0.0, 0
    batches = iter(batches)
    with tqdm(total=n_frames, desc=desc, unit="frame", disable=quiet, leave=False) as bar:
        while True:
            batch = next(batches, None)
            # Every rank takes the same number of steps (the smallest rank's): none waits on a step alone.
            if not distributed.all_ranks_have(batch is not None, device):
                break
            images = batch_to_input(batch["image"], preprocess, device)
            if augment is not None:
                images = augment_images(images, augment)
            labels = batch["labels"].to(device, non_blocking=True)
            valid = batch["valid"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                pred = forward(images)  # `model` itself, or its torch.compile'd callable
            # The loss of the global batch (1 - CCC is a statistic of the whole batch, not a mean over frames).
            pred, labels, valid = distributed.gather_batch(pred.float(), labels, valid)
            loss = task.loss(pred, labels, valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * pred.shape[0]
            seen += pred.shape[0]
            bar.update(pred.shape[0])
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    return loss_sum, seen


def _save_weights(backbone: nn.Module, path: Path) -> None:
    """The backbone's state dict as safetensors, written atomically (shared tensors stored once each)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    write_bytes_atomic(path, save(state))
