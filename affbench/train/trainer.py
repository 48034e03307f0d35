"""Stage 3: train the temporal stack and head on window shards, pick an epoch, score it on validation.

One epoch = one pass over the training windows in an order that is a pure function of (seed, epoch, rank), so
a checkpoint taken after step k of an epoch resumes by skipping k batches. Losses are masked (padding and
invalid labels carry none).

``train.select`` says which epoch is reported (``best.pt``):

* ``inner``: after each epoch the model runs on the ``selection`` split (training videos held out of stage 3),
  which picks the epoch and tunes AU thresholds; the validation split is read once, after the last epoch, to
  score the selected and the last checkpoint.
* ``last``: no per-epoch scoring; the last epoch is the reported one, scored on validation at the end.
* ``validation``: after each epoch the validation split itself picks the epoch (the paper's practice).

Scoring runs on whole videos: outputs are merged per frame and every labelled frame is scored once.
``last.pt`` (every ``train.checkpoint_every`` steps and at each epoch end) holds everything a bitwise-identical
resume needs: model, optimizer, scheduler, step, epoch, position in the epoch, RNG states.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from affbench.preflight import check_run_folders
from affbench.run_lock import run_folder_lock
from affbench.train import distributed as D
from affbench.train.checkpoints import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    model_state,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from affbench.train.config import Config, as_config, config_digest
from affbench.train.evaluate import run_windows, score, tune_thresholds, write_run_predictions
from affbench.train.run_checkpoints import load_best_checkpoint, restore_best_outputs
from affbench.train.run_dir import prepare_run_dir, run_dir_path, write_json, write_metrics_csv
from affbench.train.schedule import build_scheduler

# Test hook: the trainer SIGKILLs itself right after this optimizer step (after any checkpoint due at it), so
# tests can prove that a killed run resumes to the same parameters as an uninterrupted one.
KILL_AFTER_STEP_ENV = "AFFBENCH_KILL_AFTER_STEP"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# -- data -------------------------------------------------------------------------------------------------------


def split_dir(data: Any, split: str) -> Path:
    """The window-shard directory of `split` ("train" | "selection" | "validation") in a WindowData."""
    for attr in (split, f"{split}_dir"):
        value = getattr(data, attr, None)
        if value is not None:
            return Path(value)
    dirs = getattr(data, "dirs", None)
    if isinstance(dirs, Mapping) and split in dirs:
        return Path(dirs[split])
    if split == "selection":
        raise ValueError(f"train.select is 'inner' but the window data {data!r} has no 'selection' split (held-out "
                         "training videos; prepare_window_shards builds it); set train.select to last or validation")
    raise AttributeError(f"window data {data!r} has no '{split}' shard directory")


def expected_provenance(config: Config) -> dict[str, Any]:
    """What a config's window shards must have been built with: task, windowing and missing-face policy."""
    data = config["data"]
    return {"task": {"name": config["task"]["name"]}, "window": data["window"], "stride": data["stride"],
            "missing_faces": {"policy": data["missing_faces"]}}


def open_window_shards(config: Config, data: Any, split: str):
    """The window shards of `split` (a WindowShards), refused when their manifest was built for another config."""
    from affbench.data.window_shards import WindowShards

    return WindowShards(split_dir(data, split), expect=expected_provenance(config))


def window_data(config: Config, *, fold: int | None, quiet: bool, data: Any = None) -> Any:
    """The config's window shards, stages 1 and 2 run (or found in the cache) by every rank together."""
    if data is not None:
        return data
    from affbench.train.pipeline import prepare_window_shards

    # Under torchrun every rank takes part: stage 1 is data-parallel, stage 2 shares the videos out.
    return prepare_window_shards(config, fold=fold, quiet=quiet or not D.init_distributed().is_main)


# The split each train.select mode scores after every epoch, and the prefix of its metrics.csv columns.
SELECTION_SPLITS = {"inner": "selection", "validation": "validation", "last": None}
COLUMN_PREFIX = {"selection": "selection_", "validation": "val_"}


def headline(metrics: Mapping[str, float]) -> str:
    """The task-level scores of a metrics dict for a one-line log (``mean=0.123, valence=...``). Per-label
    scores (``f1_AU12``) and the frame counts (a multi-task model's ``<task>/frames`` too) stay in metrics.csv /
    metrics.json: the line stays short."""
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.rsplit("/", 1)[-1] != "frames" and "_" not in k)


def _fold_manifest(data: Any) -> Any:
    manifest = getattr(data, "fold_manifest", None)
    if manifest is None:
        prov = getattr(data, "provenance", None) or {}
        manifest = prov.get("fold_manifest") if isinstance(prov, Mapping) else None
    return manifest


def build_model(config: Config, feature_dim: int) -> torch.nn.Module:
    """The stage-3 model: no backbone, `feature_dim`-wide features in."""
    from affbench.model import create_model

    return create_model({**config.to_dict(), "backbone": None, "feature_dim": int(feature_dim)})


# -- one training run -------------------------------------------------------------------------------------------


def _autocast(device: torch.device, amp: str):
    if device.type == "cuda" and amp in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    return torch.autocast(device.type, enabled=False)


def _masked_loss(task: Any, out: torch.Tensor, batch: Mapping[str, Any], device: torch.device) -> torch.Tensor:
    labels = batch["labels"].to(device, non_blocking=True)
    valid = (batch["valid"] & (batch["frames"] > 0)).to(device, non_blocking=True)
    return task.loss(out.float().reshape(-1, out.shape[-1]), labels.reshape(-1, labels.shape[-1]), valid.reshape(-1))


class _Tensorboard:
    """TensorBoard scalars when tensorboard is installed; silently nothing otherwise."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(log_dir))
            except Exception:  # tensorboard is optional
                self.writer = None

    def log(self, row: Mapping[str, Any], step: int) -> None:
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(config: Config | Mapping[str, Any] | str | Path, *, fold: int | None = None,
          out_dir: str | Path = "runs", resume: bool = False, quiet: bool = False, data: Any = None) -> dict:
    """Train stage 3 for one config and fold; returns the final metrics (also in ``<run dir>/metrics.json``)."""
    config = as_config(config)
    started_group = not D.is_distributed()
    info = D.init_distributed(config["device"])
    # train.threads is process-wide in torch: give the caller (a suite, a notebook) its setting back.
    threads_before = torch.get_num_threads()
    try:
        check_run_folders(out_dir, cache=data is None)  # before stages 1-2, not after them
        # One process per run folder: a second run of this row (another seed, another suite) is refused.
        with run_folder_lock(run_dir_path(out_dir, config, fold)) if info.is_main else contextlib.nullcontext():
            return _train(config, fold=fold, out_dir=Path(out_dir), resume=resume, quiet=quiet, data=data,
                          info=info)
    finally:
        torch.set_num_threads(threads_before)
        if started_group and D.is_distributed():
            D.cleanup()


def _train(config: Config, *, fold: int | None, out_dir: Path, resume: bool, quiet: bool, data: Any,
           info: D.DistInfo) -> dict:
    tcfg, ecfg = config["train"], config["eval"]
    device = info.device
    seed = int(tcfg["seed"])
    run_dir = run_dir_path(out_dir, config, fold)
    data = window_data(config, fold=fold, quiet=quiet, data=data)
    mode = tcfg["select"]
    pick_split = SELECTION_SPLITS[mode]
    train_shards = open_window_shards(config, data, "train")
    # Opening a set reads its manifest only: under inner and last no validation window is read before the end.
    val_shards = open_window_shards(config, data, "validation")
    if pick_split == "selection":
        pick_shards = open_window_shards(config, data, "selection")
    else:
        pick_shards = val_shards if pick_split == "validation" else None
    selection = {"mode": mode, "split": pick_split,
                 **({"videos": pick_shards.provenance.get("videos")} if pick_split == "selection" else {})}
    feature_dim = int(getattr(data, "feature_dim", None) or train_shards.feature_dim)
    if info.is_main:
        shard_provenance = {"train": train_shards.provenance, "validation": val_shards.provenance,
                            **({"selection": pick_shards.provenance} if pick_split == "selection" else {})}
        prepare_run_dir(run_dir, config, seed=seed, fold=fold, fold_manifest=_fold_manifest(data),
                        provenance={**shard_provenance, "select": selection, "device": str(device),
                                    **({"data": dict(data.provenance)} if isinstance(
                                        getattr(data, "provenance", None), Mapping) else {})})

    torch.backends.cudnn.benchmark = False
    if tcfg["threads"]:
        torch.set_num_threads(int(tcfg["threads"]))
    seed_everything(seed)  # identical initial weights on every rank
    model = build_model(config, feature_dim).to(device)
    task = unwrap_model(model).task
    seed_everything(seed + info.rank)  # dropout masks differ between ranks
    if info.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])

    def make_loader(epoch: int):
        return train_shards.loader(
            tcfg["batch_size"], shuffle_seed=seed, epoch=epoch, rank=info.rank, world_size=info.world_size,
            num_workers=tcfg["workers"], resampled_len=tcfg["resampled_len"], pin_memory=device.type == "cuda")

    # Every rank takes the same number of steps (the smallest rank's count), so none waits in an all-reduce.
    def steps_in(epoch: int) -> int:
        return D.all_reduce_min(len(make_loader(epoch)), device)

    steps_per_epoch = steps_in(0)
    if steps_per_epoch < 1:
        raise ValueError(f"{split_dir(data, 'train')}: no training batch for rank {info.rank}")
    epochs = int(tcfg["epochs"])
    scheduler = build_scheduler(optimizer, steps_per_epoch=steps_per_epoch, epochs=epochs,
                                warmup_epochs=tcfg["warmup_epochs"], schedule=tcfg["schedule"])
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tcfg["amp"] == "fp16")
    digest = config_digest(config, ("task", "data", "model", "train"))

    state = {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_count": 0, "history": [],
             "best_metric": -math.inf, "best_epoch": None, "best_metrics": None, "thresholds": None,
             "last_thresholds": None, "stale_epochs": 0}
    rng_to_restore = None
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last_path.is_file():
        ckpt = load_checkpoint(last_path)
        if ckpt.get("config_digest") != digest:
            raise CheckpointError(f"{last_path}: written by a different config (task/data/model/train differ); "
                                  f"resume with the same config or start without --resume")
        if ckpt.get("world_size") != info.world_size:
            raise CheckpointError(f"{last_path}: written by {ckpt.get('world_size')} process(es), resuming with "
                                  f"{info.world_size}; the data position depends on the number of processes")
        unwrap_model(model).load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state.update(ckpt["state"])
        rng_to_restore = ckpt["rng"][info.rank] if isinstance(ckpt["rng"], list) else ckpt["rng"]
        if state["best_epoch"] is not None:  # a damaged best.pt must stop the resume, never be reported from
            load_best_checkpoint(best_path, state["best_epoch"])

    def save_last() -> None:
        rng = D.all_gather_objects(capture_rng_state())
        if info.is_main:
            save_checkpoint({"model": model_state(model), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                             "state": dict(state), "rng": rng, "config_digest": digest,
                             "world_size": info.world_size, "config": config.to_dict(),
                             "feature_dim": feature_dim, "fold": fold}, last_path)

    def score_split(shards: Any, *, tune: bool = False, thresholds: Any = None) -> tuple[dict, dict, Any, Any]:
        """(metrics, values, outputs, thresholds) of the current model on a whole split."""
        outputs = run_windows(unwrap_model(model), shards.iter_windows(), device=device,
                              batch_size=ecfg["batch_size"], amp=tcfg["amp"], rank=info.rank,
                              world_size=info.world_size, quiet=quiet, total=len(shards))
        if tune:
            thresholds = tune_thresholds(task, outputs, smoothing=ecfg["smoothing"])
        metrics, values = score(task, outputs, smoothing=ecfg["smoothing"], thresholds=thresholds)
        return metrics, values, outputs, thresholds

    kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "0") or 0)
    checkpoint_every = tcfg["checkpoint_every"]
    tb = _Tensorboard(run_dir / "tensorboard", enabled=info.is_main)
    best_values = None
    best_outputs = None
    t_run = time.perf_counter()
    try:
        while state["epoch"] < epochs:
            epoch = state["epoch"]
            n_steps = steps_in(epoch)
            skip = state["batch"]
            if rng_to_restore is not None and skip == 0:
                restore_rng_state(rng_to_restore)
                rng_to_restore = None
            batches = iter(make_loader(epoch))
            for _ in range(skip):  # the order is a pure function of (seed, epoch): skip what was consumed
                next(batches)
            if rng_to_restore is not None:  # after the loader drew its base seed, as it had before the kill
                restore_rng_state(rng_to_restore)
                rng_to_restore = None
            model.train()
            t0 = time.perf_counter()
            windows_seen = 0
            bar = tqdm(total=n_steps, initial=skip, desc=f"train {config['name']} epoch {epoch + 1}/{epochs}",
                       unit="batch", disable=quiet or not info.is_main, leave=False)
            for _ in range(skip, n_steps):
                batch = next(batches)
                feats = batch["features"].to(device, non_blocking=True).float()
                mask = batch["mask"].to(device, non_blocking=True)
                with _autocast(device, tcfg["amp"]):
                    out = model(feats, mask)
                loss = _masked_loss(task, out, batch, device)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tcfg["grad_clip"]:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                state["step"] += 1
                state["batch"] += 1
                state["loss_sum"] += float(loss.detach())
                state["loss_count"] += 1
                windows_seen += feats.shape[0]
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
                if checkpoint_every and state["step"] % checkpoint_every == 0 and state["batch"] < n_steps:
                    save_last()
                if kill_after and state["step"] == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            bar.close()
            del batches
            train_seconds = time.perf_counter() - t0

            D.broadcast_buffers(unwrap_model(model))
            loss_sum, loss_count = D.all_reduce_sum([state["loss_sum"], state["loss_count"]], device)
            metrics = thresholds = None
            if pick_shards is not None:
                metrics, values, outputs, thresholds = score_split(pick_shards, tune=ecfg["tune_thresholds"])
                primary = float(metrics[task.primary_metric])
                improved = primary > state["best_metric"]
            else:  # select: last: every epoch supersedes the one before
                primary, improved = state["best_metric"], True
            row = {"epoch": epoch + 1, "step": state["step"], "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": loss_sum / max(1.0, loss_count),
                   **{f"{COLUMN_PREFIX.get(pick_split, '')}{k}": v for k, v in (metrics or {}).items()},
                   "seconds": train_seconds,
                   "windows_per_s": windows_seen * info.world_size / max(train_seconds, 1e-9)}
            state["history"].append(row)
            state["last_thresholds"] = thresholds
            if improved:
                state.update(best_metric=primary, best_epoch=epoch + 1, best_metrics=metrics,
                             thresholds=thresholds, stale_epochs=0)
                if pick_split == "validation":
                    best_values, best_outputs = values, outputs
                if info.is_main:
                    save_checkpoint({"model": model_state(model), "epoch": epoch + 1, "step": state["step"],
                                     "metrics": metrics, "select": mode, "thresholds": thresholds,
                                     "config": config.to_dict(), "feature_dim": feature_dim, "fold": fold},
                                    best_path)
            else:
                state["stale_epochs"] += 1
            if info.is_main:
                write_metrics_csv(run_dir / "metrics.csv", state["history"])
                tb.log(row, state["step"])
                if not quiet:
                    scored = f" {pick_split} {headline(metrics)}{' *' if improved else ''}" if metrics else ""
                    tqdm.write(f"[{config['name']}] epoch {epoch + 1}/{epochs} loss {row['train_loss']:.4f}"
                               f"{scored}")
            state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_count=0)
            patience = tcfg["early_stopping"]
            stop = bool(patience and state["stale_epochs"] >= patience)
            if stop:
                state["epoch"] = epochs  # a resumed run must not train on after an early stop
            save_last()
            if stop:
                break
    finally:
        tb.close()

    if pick_split == "validation":
        best_validation = state["best_metrics"]
        last_validation = {k[4:]: v for k, v in state["history"][-1].items() if k.startswith("val_")} \
            if state["history"] else None
    elif state["history"]:
        # The one look at the validation split: the last checkpoint, then the selected one.
        last_validation, values, outputs, _ = score_split(val_shards, thresholds=state["last_thresholds"])
        if state["best_epoch"] == state["history"][-1]["epoch"]:
            best_validation, best_values, best_outputs = last_validation, values, outputs
        else:
            D.barrier()  # best.pt is complete on disk for every rank
            unwrap_model(model).load_state_dict(load_checkpoint(best_path)["model"])
            best_validation, best_values, best_outputs, _ = score_split(val_shards, thresholds=state["thresholds"])
        if info.is_main and not quiet:
            tqdm.write(f"[{config['name']}] validation of epoch {state['best_epoch']} (selected: {mode}) "
                       f"{headline(best_validation)}")
    else:
        best_validation = last_validation = None

    result = {
        "name": config["name"], "task": config["task"]["name"], "fold": fold, "run_dir": str(run_dir),
        "primary_metric": task.primary_metric, "select": mode, "best_epoch": state["best_epoch"],
        "metrics": best_validation, "last": last_validation, "thresholds": state["thresholds"],
        "selection": {**selection, "metrics": state["best_metrics"]},
        "epochs_run": len(state["history"]), "steps": state["step"],
        "seconds": time.perf_counter() - t_run, "world_size": info.world_size,
    }
    if best_values is None and state["best_epoch"] is not None:  # resumed after its best epoch
        best_values, best_outputs = restore_best_outputs(
            best_path, unwrap_model(model), val_shards, best_epoch=state["best_epoch"],
            thresholds=state["thresholds"], ecfg=ecfg, amp=tcfg["amp"], device=device, info=info, quiet=quiet)
    if info.is_main:
        if best_values is not None and best_outputs is not None:
            write_run_predictions(task, best_outputs, best_values, run_dir)
        write_json(run_dir / "metrics.json", result)
    D.barrier()
    return result
