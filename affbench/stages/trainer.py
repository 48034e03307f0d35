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

Scoring runs on whole videos: outputs are merged per frame and every labelled frame is scored once (or, under
``eval.scoring: windows``, the frames of full windows as often as windows hold them: affbench.scoring_rule).
``last.pt`` (every ``train.checkpoint_every`` steps and at each epoch end) holds everything a bitwise-identical
resume needs: model, optimizer, scheduler, step, epoch, position in the epoch, RNG states.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from affbench.core.config import Config, as_config, config_digest
from affbench.devices import autocast
from affbench.output import write_json
from affbench.preflight import check_run_folders
from affbench.run_lock import run_folder_lock
from affbench.scoring_rule import ScoringRule
from affbench.stages import distributed
from affbench.stages.checkpoints import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    model_state,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from affbench.stages.evaluate import run_windows, score, tune_thresholds, write_run_predictions
from affbench.stages.pipeline import WindowData, build_model, open_window_shards, split_dir, window_data
from affbench.stages.run_checkpoints import RUN_SECTIONS, load_best_checkpoint
from affbench.stages.run_dir import prepare_run_dir, run_dir_path, write_metrics_csv
from affbench.stages.schedule import build_scheduler

# Called after every optimizer step with the global step count (after any checkpoint due at it). The tests use
# it to SIGKILL a run mid-epoch and prove that it resumes to the same parameters as an uninterrupted one.
StepCallback = Callable[[int], None]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# The split each train.select mode scores after every epoch, and the prefix of its metrics.csv columns.
SELECTION_SPLITS = {"inner": "selection", "validation": "validation", "last": None}
COLUMN_PREFIX = {"selection": "selection_", "validation": "val_"}


def headline(metrics: Mapping[str, float]) -> str:
    """The task-level scores of a metrics dict for a one-line log (``mean=0.123, valence=...``). Per-label
    scores (``f1_AU12``) and the frame counts (a multi-task model's ``<task>/frames`` too) stay in metrics.csv /
    metrics.json: the line stays short."""
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.rsplit("/", 1)[-1] != "frames" and "_" not in k)


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
          out_dir: str | Path = "runs", resume: bool = False, quiet: bool = False, data: WindowData | None = None,
          after_step: StepCallback | None = None) -> dict:
    """Train stage 3 for one config and fold; returns the final metrics (also in ``<run dir>/metrics.json``)."""
    config = as_config(config)
    started_group = not distributed.is_distributed()
    info = distributed.init_distributed(config["device"])
    # train.threads is process-wide in torch: give the caller (a suite, a notebook) its setting back.
    threads_before = torch.get_num_threads()
    finished = False
    try:
        check_run_folders(out_dir, cache=data is None)  # before stages 1-2, not after them
        # One process per run folder: a second run of this row (another seed, another suite) is refused.
        with run_folder_lock(run_dir_path(out_dir, config, fold)) if info.is_main else contextlib.nullcontext():
            data = window_data(config, fold=fold, quiet=quiet, data=data)
            run = _Stage3Run(config, fold=fold, out_dir=Path(out_dir), quiet=quiet, data=data, info=info,
                             after_step=after_step)
            if resume:
                run.resume()
            run.fit()
            metrics = run.finish()
        finished = True
        return metrics
    finally:
        torch.set_num_threads(threads_before)
        if started_group and distributed.is_distributed():
            distributed.cleanup(wait_for_all=finished)


@dataclass
class _Splits:
    """The window shards a run reads, and which split picks its epoch (None under train.select: last)."""

    train: Any
    validation: Any
    pick: Any
    pick_split: str | None
    selection: dict  # what metrics.json records of the selection: mode, split (and its videos under inner)

    @classmethod
    def open(cls, config: Config, data: WindowData) -> _Splits:
        mode = config["train"]["select"]
        pick_split = SELECTION_SPLITS[mode]
        train_shards = open_window_shards(config, data, "train")
        # Opening a set reads its manifest only: under inner and last no validation window is read before the end.
        val_shards = open_window_shards(config, data, "validation")
        if pick_split == "selection":
            pick = open_window_shards(config, data, "selection")
        else:
            pick = val_shards if pick_split == "validation" else None
        selection = {"mode": mode, "split": pick_split,
                     **({"videos": pick.provenance.get("videos")} if pick_split == "selection" else {})}
        return cls(train_shards, val_shards, pick, pick_split, selection)

    def provenance(self) -> dict[str, Any]:
        return {"train": self.train.provenance, "validation": self.validation.provenance,
                **({"selection": self.pick.provenance} if self.pick_split == "selection" else {})}


def _fresh_state() -> dict[str, Any]:
    return {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_count": 0, "history": [],
            "best_metric": -math.inf, "best_epoch": None, "best_metrics": None, "thresholds": None,
            "last_thresholds": None, "stale_epochs": 0}


class _Stage3Run:
    """One training run of one config and fold: set up, resumed (or not), trained epoch by epoch, finished.

    ``state`` is what ``last.pt`` saves besides the weights and optimizer: everything a resume needs to go on
    from the exact batch it stopped after.
    """

    def __init__(self, config: Config, *, fold: int | None, out_dir: Path, quiet: bool, data: WindowData,
                 info: distributed.DistInfo, after_step: StepCallback | None) -> None:
        self.config, self.fold, self.quiet, self.info, self.after_step = config, fold, quiet, info, after_step
        self.train_cfg, self.eval_cfg = config["train"], config["eval"]
        self.device = info.device
        self.seed = int(self.train_cfg["seed"])
        self.run_dir = run_dir_path(out_dir, config, fold)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.splits = _Splits.open(config, data)
        self.feature_dim = int(data.feature_dim or self.splits.train.feature_dim)
        if info.is_main:
            prepare_run_dir(self.run_dir, config, seed=self.seed, fold=fold, fold_manifest=data.fold_manifest,
                            provenance={**self.splits.provenance(), "select": self.splits.selection,
                                        "device": str(self.device),
                                        "compile": bool(config.get("compile")), "data": dict(data.provenance)})
        self._build(data)
        self.state = _fresh_state()
        self.rng_to_restore = None
        # The validation outputs of the reported epoch (for predictions.validation.csv), when held in memory.
        self.best_values = self.best_outputs = None
        self.started = time.perf_counter()  # fit() restarts it: the result's seconds are the training's

    def _build(self, data: WindowData) -> None:
        """Model, optimizer, scheduler and scaler, seeded so that every rank starts from the same weights."""
        train_cfg, info = self.train_cfg, self.info
        torch.backends.cudnn.benchmark = False
        if train_cfg["threads"]:
            torch.set_num_threads(int(train_cfg["threads"]))
        seed_everything(self.seed)  # identical initial weights on every rank
        self.model = build_model(self.config, self.feature_dim).to(self.device)
        self.task = unwrap_model(self.model).task
        seed_everything(self.seed + info.rank)  # dropout masks differ between ranks
        if info.distributed:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train_cfg["lr"],
                                           weight_decay=train_cfg["weight_decay"])
        steps_per_epoch = self._steps_in(0)
        if steps_per_epoch < 1:
            raise ValueError(f"{split_dir(data, 'train')}: no training batch for rank {info.rank}")
        self.epochs = int(train_cfg["epochs"])
        self.scheduler = build_scheduler(self.optimizer, steps_per_epoch=steps_per_epoch, epochs=self.epochs,
                                         warmup_epochs=train_cfg["warmup_epochs"], schedule=train_cfg["schedule"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and train_cfg["amp"] == "fp16")
        self.digest = config_digest(self.config, RUN_SECTIONS)
        self.scoring = ScoringRule.of(self.config)  # every split scored after an epoch or at the end

    def _loader(self, epoch: int):
        train_cfg, info = self.train_cfg, self.info
        return self.splits.train.loader(
            train_cfg["batch_size"], shuffle_seed=self.seed, epoch=epoch, rank=info.rank,
            world_size=info.world_size, num_workers=train_cfg["workers"], resampled_len=train_cfg["resampled_len"],
            pin_memory=self.device.type == "cuda")

    def _steps_in(self, epoch: int) -> int:
        # Every rank takes the same number of steps (the smallest rank's count), so none waits in an all-reduce.
        return distributed.all_reduce_min(len(self._loader(epoch)), self.device)

    # -- resume -------------------------------------------------------------------------------------------------

    def resume(self) -> None:
        """Go on from ``last.pt`` when there is one: weights, optimizer, schedule, position and RNG states."""
        if not self.last_path.is_file():
            return
        ckpt = load_checkpoint(self.last_path)
        if ckpt.get("config_digest") != self.digest:
            raise CheckpointError(f"{self.last_path}: written by a different config (task/data/model/train "
                                  "differ); resume with the same config or start without --resume")
        world_size = self.info.world_size
        if ckpt.get("world_size") != world_size:
            raise CheckpointError(f"{self.last_path}: written by {ckpt.get('world_size')} process(es), resuming "
                                  f"with {world_size}; the data position depends on the number of processes")
        unwrap_model(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state.update(ckpt["state"])
        self.rng_to_restore = ckpt["rng"][self.info.rank] if isinstance(ckpt["rng"], list) else ckpt["rng"]
        if self.state["best_epoch"] is not None:  # a damaged best.pt must stop the resume, never be reported from
            load_best_checkpoint(self.best_path, self.state["best_epoch"])

    def _save_last(self) -> None:
        rng = distributed.all_gather_objects(capture_rng_state())
        if self.info.is_main:
            save_checkpoint({"model": model_state(self.model), "optimizer": self.optimizer.state_dict(),
                             "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                             "state": dict(self.state), "rng": rng, "config_digest": self.digest,
                             "world_size": self.info.world_size, "config": self.config.to_dict(),
                             "feature_dim": self.feature_dim, "fold": self.fold}, self.last_path)

    # -- the epochs ---------------------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train the remaining epochs; each ends with its scoring, ``last.pt`` and an early-stopping check."""
        tensorboard = _Tensorboard(self.run_dir / "tensorboard", enabled=self.info.is_main)
        self.started = time.perf_counter()
        try:
            while self.state["epoch"] < self.epochs:
                epoch = self.state["epoch"]
                seconds, windows = self._train_epoch(epoch)
                row, metrics, improved = self._score_epoch(epoch, seconds, windows)
                if self.info.is_main:
                    write_metrics_csv(self.run_dir / "metrics.csv", self.state["history"])
                    tensorboard.log(row, self.state["step"])
                    self._log_epoch(epoch, row, metrics, improved)
                self.state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_count=0)
                patience = self.train_cfg["early_stopping"]
                stop = bool(patience and self.state["stale_epochs"] >= patience)
                if stop:
                    self.state["epoch"] = self.epochs  # a resumed run must not train on after an early stop
                self._save_last()
                if stop:
                    break
        finally:
            tensorboard.close()

    def _batches_from(self, epoch: int, skip: int):
        """The epoch's batches after the first `skip` (consumed before a resume), RNG states restored in the
        order an uninterrupted run drew them."""
        if self.rng_to_restore is not None and skip == 0:
            restore_rng_state(self.rng_to_restore)
            self.rng_to_restore = None
        batches = iter(self._loader(epoch))
        for _ in range(skip):  # the order is a pure function of (seed, epoch): skip what was consumed
            next(batches)
        if self.rng_to_restore is not None:  # after the loader drew its base seed, as it had before the kill
            restore_rng_state(self.rng_to_restore)
            self.rng_to_restore = None
        return batches

    def _train_epoch(self, epoch: int) -> tuple[float, int]:
        """One pass over the training windows from the saved position; (seconds, windows seen)."""
        state, train_cfg = self.state, self.train_cfg
        n_steps = self._steps_in(epoch)
        skip = state["batch"]
        batches = self._batches_from(epoch, skip)
        self.model.train()
        t0 = time.perf_counter()
        windows_seen = 0
        bar = tqdm(total=n_steps, initial=skip, unit="batch", leave=False,
                   desc=f"train {self.config['name']} epoch {epoch + 1}/{self.epochs}",
                   disable=self.quiet or not self.info.is_main)
        checkpoint_every = train_cfg["checkpoint_every"]
        for _ in range(skip, n_steps):
            batch = next(batches)
            loss = self._step(batch)
            state["step"] += 1
            state["batch"] += 1
            state["loss_sum"] += loss
            state["loss_count"] += 1
            windows_seen += batch["features"].shape[0]
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if checkpoint_every and state["step"] % checkpoint_every == 0 and state["batch"] < n_steps:
                self._save_last()
            if self.after_step is not None:
                self.after_step(state["step"])
        bar.close()
        del batches
        return time.perf_counter() - t0, windows_seen

    def _step(self, batch: Mapping[str, Any]) -> float:
        """One optimizer step on `batch`; its loss."""
        device, train_cfg = self.device, self.train_cfg
        feats = batch["features"].to(device, non_blocking=True).float()
        mask = batch["mask"].to(device, non_blocking=True)
        with autocast(device, train_cfg["amp"]):
            out = self.model(feats, mask)
        loss = _masked_loss(self.task, out, batch, device)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if train_cfg["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), train_cfg["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    # -- validation ---------------------------------------------------------------------------------------------

    def _score(self, shards: Any, *, tune: bool = False, thresholds: Any = None) -> tuple[dict, dict, Any, Any]:
        """(metrics, values, outputs, thresholds) of the current model on a whole split."""
        eval_cfg, info = self.eval_cfg, self.info
        outputs = run_windows(unwrap_model(self.model), shards.iter_windows(), device=self.device,
                              batch_size=eval_cfg["batch_size"], amp=self.train_cfg["amp"], rank=info.rank,
                              world_size=info.world_size, quiet=self.quiet, total=len(shards))
        if tune:
            thresholds = tune_thresholds(self.task, outputs, smoothing=eval_cfg["smoothing"])
        metrics, values = score(self.task, outputs, smoothing=eval_cfg["smoothing"], thresholds=thresholds,
                                rule=self.scoring)
        return metrics, values, outputs, thresholds

    def _score_epoch(self, epoch: int, seconds: float, windows: int) -> tuple[dict, dict | None, bool]:
        """Score the epoch on the picking split (if any), add its row to the history, keep ``best.pt`` when it
        improved; (row, metrics on the picking split, improved)."""
        state, info, pick_split = self.state, self.info, self.splits.pick_split
        distributed.broadcast_buffers(unwrap_model(self.model))
        loss_sum, loss_count = distributed.all_reduce_sum([state["loss_sum"], state["loss_count"]], self.device)
        metrics = thresholds = None
        if self.splits.pick is not None:
            metrics, values, outputs, thresholds = self._score(self.splits.pick, tune=self.eval_cfg["tune_thresholds"])
            primary = float(metrics[self.task.primary_metric])
            improved = primary > state["best_metric"]
        else:  # select: last: every epoch supersedes the one before
            primary, improved = state["best_metric"], True
        row = {"epoch": epoch + 1, "step": state["step"], "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum / max(1.0, loss_count),
               **{f"{COLUMN_PREFIX.get(pick_split, '')}{k}": v for k, v in (metrics or {}).items()},
               "seconds": seconds, "windows_per_s": windows * info.world_size / max(seconds, 1e-9)}
        state["history"].append(row)
        state["last_thresholds"] = thresholds
        if not improved:
            state["stale_epochs"] += 1
            return row, metrics, improved
        state.update(best_metric=primary, best_epoch=epoch + 1, best_metrics=metrics, thresholds=thresholds,
                     stale_epochs=0)
        if pick_split == "validation":
            self.best_values, self.best_outputs = values, outputs
        if info.is_main:
            save_checkpoint({"model": model_state(self.model), "epoch": epoch + 1, "step": state["step"],
                             "metrics": metrics, "select": self.splits.selection["mode"], "thresholds": thresholds,
                             "config": self.config.to_dict(), "feature_dim": self.feature_dim, "fold": self.fold},
                            self.best_path)
        return row, metrics, improved

    def _log_epoch(self, epoch: int, row: Mapping[str, Any], metrics: dict | None, improved: bool) -> None:
        if self.quiet:
            return
        scored = f" {self.splits.pick_split} {headline(metrics)}{' *' if improved else ''}" if metrics else ""
        tqdm.write(f"[{self.config['name']}] epoch {epoch + 1}/{self.epochs} loss {row['train_loss']:.4f}{scored}")

    # -- finish -------------------------------------------------------------------------------------------------

    def _final_validation(self) -> tuple[dict | None, dict | None]:
        """(validation metrics of the reported epoch, of the last epoch): under inner and last the one look at the
        validation split, at the end; under validation what the epochs already scored."""
        state = self.state
        if self.splits.pick_split == "validation":
            last = {k[4:]: v for k, v in state["history"][-1].items() if k.startswith("val_")} \
                if state["history"] else None
            return state["best_metrics"], last
        if not state["history"]:
            return None, None
        # The one look at the validation split: the last checkpoint, then the selected one.
        last, values, outputs, _ = self._score(self.splits.validation, thresholds=state["last_thresholds"])
        if state["best_epoch"] == state["history"][-1]["epoch"]:
            best, self.best_values, self.best_outputs = last, values, outputs
        else:
            distributed.barrier()  # best.pt is complete on disk for every rank
            unwrap_model(self.model).load_state_dict(load_checkpoint(self.best_path)["model"])
            best, self.best_values, self.best_outputs, _ = self._score(self.splits.validation,
                                                                       thresholds=state["thresholds"])
        if self.info.is_main and not self.quiet:
            tqdm.write(f"[{self.config['name']}] validation of epoch {state['best_epoch']} (selected: "
                       f"{self.splits.selection['mode']}) {headline(best)}")
        return best, last

    def _restore_best_outputs(self) -> None:
        """A run resumed after its best epoch never held that epoch's validation outputs in memory: recompute
        them from ``best.pt`` (a missing or corrupt one refuses, naming it), so the resumed run writes the same
        ``predictions.validation.csv`` as an uninterrupted one."""
        best = load_best_checkpoint(self.best_path, self.state["best_epoch"])
        try:
            unwrap_model(self.model).load_state_dict(best["model"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.best_path}: weights do not fit this run's model: "
                                  f"{str(exc).splitlines()[0]}") from None
        _, self.best_values, self.best_outputs, _ = self._score(self.splits.validation,
                                                                thresholds=self.state["thresholds"])

    def finish(self) -> dict:
        """Score what is reported, write ``metrics.json`` and the validation predictions; the result."""
        state, info = self.state, self.info
        best_validation, last_validation = self._final_validation()
        result = {
            "name": self.config["name"], "task": self.config["task"]["name"], "fold": self.fold,
            "run_dir": str(self.run_dir), "primary_metric": self.task.primary_metric,
            "select": self.splits.selection["mode"], "scoring": self.scoring.to_dict(),
            "best_epoch": state["best_epoch"],
            "metrics": best_validation, "last": last_validation, "thresholds": state["thresholds"],
            "selection": {**self.splits.selection, "metrics": state["best_metrics"]},
            "epochs_run": len(state["history"]), "steps": state["step"],
            "seconds": time.perf_counter() - self.started, "world_size": info.world_size,
        }
        if self.best_values is None and state["best_epoch"] is not None:  # resumed after its best epoch
            self._restore_best_outputs()
        if info.is_main:
            if self.best_values is not None and self.best_outputs is not None:
                write_run_predictions(self.task, self.best_outputs, self.best_values, self.run_dir)
            write_json(self.run_dir / "metrics.json", result)
        distributed.barrier()
        return result
