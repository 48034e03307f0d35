"""Whole-video evaluation and prediction: window outputs merged per frame, every labelled frame scored once.

The model runs on every window of a split; overlapping window outputs are averaged per frame, so each frame of
each video has exactly one output, frames without a face included (their features are masked, the temporal
model still predicts them from their neighbours). Metrics are computed over all valid frames of the split at
once, as ABAW scores them (``eval.scoring: windows`` counts the frames of full windows instead, each as often
as windows hold it: affbench.scoring_rule). Optional temporal smoothing (mode filter for EXPR classes, moving average for VA
values and for AU probabilities) and per-AU thresholds tuned on the validation split only.

Under DDP every rank reads the split's windows, runs the batches ``j`` with ``j % world_size == rank`` (batch
composition is the same as in one process) and the outputs are gathered and merged in (video, start) order,
so the metrics equal the single-process ones.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from affbench import task_contract as contract
from affbench.data.submission import (
    LOCATION_COLUMN,
    SUBMISSION_HEADERS,
    OrderFile,
    parse_location,
    read_order_file,
    validate_submission,
)
from affbench.data.windows import VideoPredictionMerger
from affbench.devices import autocast, resolve_device
from affbench.output import open_atomic
from affbench.scoring_rule import ScoringRule
from affbench.stages import distributed
from affbench.task_contract import set_thresholds

PREDICT_SPLITS = ("train", "validation", "test")


@dataclass
class VideoOutputs:
    """Per-video merged model outputs and the frame labels read from the same windows."""

    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # video -> float32 [n, out_dim]
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # video -> float32 [n, label_dim]
    valid: dict[str, np.ndarray] = field(default_factory=dict)  # video -> bool [n]
    has_face: dict[str, np.ndarray] = field(default_factory=dict)  # video -> bool [n] (frame had a feature)

    @property
    def videos(self) -> list[str]:
        return sorted(self.outputs)

    @property
    def n_labelled(self) -> int:
        """Valid (scored) frames over all videos."""
        return int(sum(v.sum() for v in self.valid.values()))


# -- running the model over windows ---------------------------------------------------------------------------


def _batches(windows: Iterable[dict[str, Any]], batch_size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for w in windows:
        batch.append(w)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def run_windows(model: torch.nn.Module, windows: Iterable[dict[str, Any]], *, device: torch.device,
                batch_size: int = 64, amp: str = "none", rank: int = 0, world_size: int = 1,
                quiet: bool = True, total: int | None = None) -> VideoOutputs:
    """Run `model` on every window (dicts as ``WindowShards.iter_windows`` yields), merge outputs per frame."""
    was_training = model.training
    model.eval()
    mine: list[tuple[str, int, int, np.ndarray, np.ndarray]] = []
    labels: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    has_face: dict[str, np.ndarray] = {}
    bar = tqdm(total=total, desc="evaluate", unit="window", disable=quiet or rank != 0, leave=False)
    try:
        for j, batch in enumerate(_batches(windows, batch_size)):
            for w in batch:  # labels come from every window on every rank: no need to gather them
                _record_labels(w, labels, valid, has_face)
            bar.update(len(batch))
            if j % world_size != rank:
                continue
            feats = torch.from_numpy(np.stack([w["features"] for w in batch]))
            mask = torch.from_numpy(np.stack([w["mask"] for w in batch]))
            with autocast(device, amp):
                out = model(feats.to(device, non_blocking=True).float(), mask.to(device, non_blocking=True))
            out = out.float().cpu().numpy()
            for i, w in enumerate(batch):
                mine.append((w["video"], int(w["start"]), int(w["n_frames"]), np.asarray(w["frames"]), out[i]))
    finally:
        bar.close()
        model.train(was_training)
    gathered = [item for part in distributed.all_gather_objects(mine) for item in part]
    # A fixed merge order makes the float sums independent of how windows were spread over ranks.
    gathered.sort(key=lambda item: (item[0], item[1]))
    merger = VideoPredictionMerger()
    for video, _start, n_frames, frames, out in gathered:
        merger.add(video, out, frames, n_frames)
    outputs = merger.results()
    missing = sorted(set(labels) - set(outputs))
    if missing:
        raise RuntimeError(f"no model output for video(s) {', '.join(missing[:5])}")
    return VideoOutputs(outputs=outputs, labels=labels, valid=valid, has_face=has_face)


def _record_labels(w: Mapping[str, Any], labels: dict, valid: dict, has_face: dict) -> None:
    video, n = w["video"], int(w["n_frames"])
    if video not in labels:
        labels[video] = np.zeros((n, w["labels"].shape[1]), np.float32)
        valid[video] = np.zeros(n, bool)
        has_face[video] = np.zeros(n, bool)
    frames = np.asarray(w["frames"]).astype(np.int64)
    real = frames > 0
    idx = frames[real] - 1
    labels[video][idx] = w["labels"][real]
    valid[video][idx] = w["valid"][real]
    has_face[video][idx] = w["mask"][real]


# -- from outputs to submission values ------------------------------------------------------------------------


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 (the window shrinks at the ends), float64 in, same shape out."""
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or x.shape[0] == 0:
        return x.copy()
    n = x.shape[0]
    half_lo, half_hi = (window - 1) // 2, window // 2
    csum = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)], axis=0)
    lo = np.clip(np.arange(n) - half_lo, 0, n)
    hi = np.clip(np.arange(n) + half_hi + 1, 0, n)
    counts = (hi - lo).reshape(-1, *([1] * (x.ndim - 1)))
    return (csum[hi] - csum[lo]) / counts


def mode_filter(labels: np.ndarray, window: int, n_classes: int) -> np.ndarray:
    """Centred mode filter of class indices [n] (ties go to the lowest class index)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if window <= 1 or labels.size == 0:
        return labels.copy()
    onehot = np.eye(n_classes, dtype=np.float64)[labels]
    counts = moving_average(onehot, window)
    return counts.argmax(axis=1)


def task_probabilities(task: Any, raw: np.ndarray) -> np.ndarray | None:
    """The task's per-frame probabilities (None for a task without them, e.g. a regression)."""
    probs = task.probabilities(torch.from_numpy(np.asarray(raw, np.float32)))
    return None if probs is None else contract.as_numpy(probs)


@contextmanager
def _installed(task: Any, thresholds: Sequence[float] | None):
    """The task with `thresholds` as its post-processing state for the block, its own state restored after."""
    if thresholds is None or not hasattr(task, "thresholds"):
        yield task
        return
    saved = contract.as_numpy(task.thresholds).copy()
    set_thresholds(task, thresholds)
    try:
        yield task
    finally:
        set_thresholds(task, saved)


def frame_values(task: Any, raw: np.ndarray, *, smoothing: int | None = None,
                 thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Submission values [n, label_dim] of one video from its merged raw outputs [n, out_dim]: the task's own
    post-processing (smoothing over `smoothing` frames, its tuned state, or `thresholds` in its place)."""
    with _installed(task, thresholds):
        return contract.submission_values(task, raw, smoothing)


def tune_thresholds(task: Any, outputs: VideoOutputs, *, smoothing: int | None = None) -> list[float] | None:
    """The post-processing state (e.g. per-label thresholds) the task fits on these (selection split) outputs;
    None for a task with nothing to tune."""
    videos = outputs.videos
    return contract.tune(task, [outputs.outputs[v] for v in videos], [outputs.labels[v] for v in videos],
                         [outputs.valid[v] for v in videos], smoothing)


def score(task: Any, outputs: VideoOutputs, *, smoothing: int | None = None,
          thresholds: Sequence[float] | None = None,
          rule: ScoringRule | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(metrics over the split's scored frames at once, submission values per video).

    `rule` (``eval.scoring``, default every valid frame once) says which frames count and how often; the values
    are computed on whole videos first (smoothing sees every frame), then the scored frames are picked."""
    rule = rule or ScoringRule()
    values = {v: frame_values(task, outputs.outputs[v], smoothing=smoothing, thresholds=thresholds)
              for v in outputs.videos}
    scored = {v: rule.scored_index(outputs.valid[v]) for v in outputs.videos}
    pred = [values[v][scored[v]] for v in outputs.videos]
    target = [outputs.labels[v][scored[v]] for v in outputs.videos]
    n = int(sum(len(p) for p in pred))
    if n == 0:
        where = (f" in full windows of {rule.window} frames (eval.scoring: windows)" if rule.on_windows else "")
        raise ValueError(f"no valid labelled frame{where} in the split; nothing to score")
    pred_all, target_all = np.concatenate(pred), np.concatenate(target)
    metrics = {k: float(v) for k, v in task.metrics(pred_all, target_all).items()}
    metrics.update(contract.registered_metrics(task, pred_all, target_all))
    metrics["frames"] = n
    return metrics, values


# -- files -----------------------------------------------------------------------------------------------------


def per_task(task: Any, outputs: VideoOutputs, values: Mapping[str, np.ndarray]
             ) -> list[tuple[str, Any, VideoOutputs, dict[str, np.ndarray]]]:
    """(sub-folder, task, outputs, values) for each task whose files a run writes: the task itself (sub-folder
    ""), or each part of a multi-task model (its own name) on its own columns, over the videos it labels, so
    its files read as those of a single-task run of it."""
    from affbench.multitask import is_multitask

    if not is_multitask(task):
        return [("", task, outputs, dict(values))]
    layout, out = task.layout, []
    for i, (name, part) in enumerate(task.named_parts()):
        videos = [v for v in outputs.videos if layout.usable(outputs.labels[v], i).any()]
        part_outputs = VideoOutputs(
            outputs={v: outputs.outputs[v][:, layout.out_slices[i]] for v in videos},
            labels={v: outputs.labels[v][:, layout.label_slices[i]] for v in videos},
            valid={v: outputs.valid[v] & layout.usable(outputs.labels[v], i) for v in videos},
            has_face={v: outputs.has_face[v] for v in videos if v in outputs.has_face})
        out.append((name, part, part_outputs, {v: values[v][:, layout.label_slices[i]] for v in videos}))
    return out


def write_run_predictions(task: Any, outputs: VideoOutputs, values: Mapping[str, np.ndarray], run_dir: Path,
                          split: str = "validation") -> list[Path]:
    """``predictions.<split>.csv`` of a run; a multi-task model writes one per task, in ``<run dir>/<task>/``."""
    return [write_predictions_csv(t, o, v, Path(run_dir) / sub / f"predictions.{split}.csv")
            for sub, t, o, v in per_task(task, outputs, values)]


def write_predictions_csv(task: Any, outputs: VideoOutputs, values: Mapping[str, np.ndarray],
                          path: str | Path) -> Path:
    """Per-frame predictions: video, frame, face, prediction column(s), probabilities (EXPR, AU), and the label
    each frame is scored against: ``valid`` (1 = scored) and ``true_<column>`` (the annotation's value).

    With the labels beside the predictions a run folder can be rescored (e.g. bootstrapped over videos) without
    reopening the dataset.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pred_cols = contract.prediction_columns(task)
    probs_header = contract.probability_columns(task)
    with open_atomic(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["video", "frame", "face", *pred_cols, *probs_header, "valid",
                         *(f"true_{c}" for c in pred_cols)])
        for video in sorted(values):
            vals = values[video]
            prob = task_probabilities(task, outputs.outputs[video]) if probs_header else None
            face = outputs.has_face.get(video)
            labels, valid = outputs.labels.get(video), outputs.valid.get(video)
            for i in range(vals.shape[0]):
                row = [video, i + 1, int(face[i]) if face is not None else ""]
                row += [contract.format_value(task, x) for x in vals[i]]
                if prob is not None:
                    row += [f"{p:.6f}" for p in prob[i]]
                row += [int(valid[i]) if valid is not None else ""]
                row += [contract.format_value(task, x) for x in labels[i]] if labels is not None else [""] * len(pred_cols)
                writer.writerow(row)
    return path


def write_submission(task: Any, values: Mapping[str, np.ndarray], path: str | Path, *,
                     order: Sequence[str] | None = None) -> dict[str, int]:
    """An ABAW submission file: ``image_location,<columns>``, one row per frame of every listed video.

    Without `order` every frame of every video is written (sorted videos, frames 1..n, faces or not). With
    `order` (the sample file's image_location column) rows follow it; a listed frame past a video's last
    predicted frame takes the last frame's value (image folders can list more frames than were annotated).
    Returns counts: rows written and rows filled from a neighbour.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = contract.submission_columns(task)
    if order is None:
        order = [f"{v}/{i:05d}.jpg" for v in sorted(values) for i in range(1, values[v].shape[0] + 1)]
    filled = 0
    with open_atomic(path) as handle:
        handle.write(",".join(["image_location", *columns]) + "\n")
        for i, location in enumerate(order):
            video, frame = parse_location(location, path, None)
            if video not in values:
                where = order.where(i) if isinstance(order, OrderFile) else "the order file"
                raise ValueError(f"{where}: video '{video}' has no predictions in this split; predict the split "
                                 "that holds it (--split test for videos without annotation files)")
            vals = values[video]
            index = frame - 1
            if not 0 <= index < vals.shape[0]:
                index = min(max(index, 0), vals.shape[0] - 1)
                filled += 1
            handle.write(",".join([location, *(contract.format_value(task, x) for x in vals[index])]) + "\n")
    return {"rows": len(order), "filled": filled}


# -- evaluate / predict from a checkpoint -----------------------------------------------------------------------


def load_trained(checkpoint: str | Path, config: Any = None, *, device: str | torch.device | None = None):
    """(config, model, checkpoint dict) from a ``best.pt``/``last.pt`` (config from the checkpoint if not given)."""
    from affbench.core.config import as_config
    from affbench.stages.checkpoints import CheckpointError, load_checkpoint
    from affbench.stages.pipeline import build_model
    from affbench.stages.run_checkpoints import checkpoint_config

    ckpt = load_checkpoint(checkpoint)
    if config is None:
        config = checkpoint_config(checkpoint, ckpt)  # refuses a checkpoint foreign to its run folder
    else:
        config = as_config(config)
    feature_dim = ckpt.get("feature_dim") or config.get("feature_dim")
    if feature_dim is None:
        raise CheckpointError(f"{checkpoint}: holds no feature_dim; it is not a stage-3 checkpoint")
    model = build_model(config, int(feature_dim))
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the model of this config: "
                              f"{str(exc).splitlines()[0]}") from None
    set_thresholds(model.task, ckpt.get("thresholds"))
    if device is not None:  # the request wins over the run's config, for any stage 1-2 work evaluating needs too
        config["device"] = str(device)
    model.to(resolve_device(config.get("device")))
    return config, model, ckpt


def _split_outputs(config: Any, model: torch.nn.Module, *, fold: int | None, split: str, data: Any,
                   quiet: bool) -> VideoOutputs:
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    from affbench.stages.pipeline import open_window_shards, window_data

    data = window_data(config, fold=fold, quiet=quiet, data=data)
    shards = open_window_shards(config, data, split)
    info = distributed.init_distributed()
    return run_windows(model, shards.iter_windows(), device=next(model.parameters()).device,
                       batch_size=config["eval"]["batch_size"], amp=config["train"]["amp"], rank=info.rank,
                       world_size=info.world_size, quiet=quiet, total=len(shards))


def evaluate(checkpoint: str | Path, *, config: Any = None, fold: int | None = None, split: str = "validation",
             smoothing: int | None = None, data: Any = None, quiet: bool = False, device: str | None = None) -> dict:
    """Metrics of a trained checkpoint on a split: whole videos, every labelled frame once unless the config's
    ``eval.scoring`` says windows (on `device`: see affbench.devices; default the config's)."""
    config, model, ckpt = load_trained(checkpoint, config, device=device)
    fold = ckpt.get("fold") if fold is None else fold
    outputs = _split_outputs(config, model, fold=fold, split=split, data=data, quiet=quiet)
    window = smoothing if smoothing is not None else config["eval"]["smoothing"]
    rule = ScoringRule.of(config)
    metrics, _ = score(model.task, outputs, smoothing=window, rule=rule)
    return {"checkpoint": str(checkpoint), "split": split, "fold": fold, "smoothing": window,
            "scoring": rule.to_dict(), "task": model.task.name, "primary_metric": model.task.primary_metric,
            "metrics": metrics}


def _test_outputs(config: Any, model: torch.nn.Module, *, fold: int | None, order: OrderFile,
                  quiet: bool) -> VideoOutputs:
    """Model outputs on the unlabelled videos `order` lists: features by the run's own backbone (stage 2, same
    cache; fine-tuned on the run's fold), whole videos through windows merged per frame."""
    from affbench.data.affwild2_layout import unlabelled_records
    from affbench.data.window_shards import WindowShards, build_window_shards
    from affbench.stages.extract import extract_features
    from affbench.stages.pipeline import expected_provenance
    from affbench.stages.stage_inputs import load_stage_inputs

    inputs = load_stage_inputs(config, fold)
    records = unlabelled_records(order.frames_per_video(), inputs.dataset.image_root, int(model.task.label_dim))
    features = extract_features(config, fold=fold, quiet=quiet, inputs=inputs, records=records)
    directory, _ = build_window_shards(config, inputs, features, "test", records=records, quiet=quiet)
    shards = WindowShards(directory, expect=expected_provenance(config))
    info = distributed.init_distributed()
    return run_windows(model, shards.iter_windows(), device=next(model.parameters()).device,
                       batch_size=config["eval"]["batch_size"], amp=config["train"]["amp"], rank=info.rank,
                       world_size=info.world_size, quiet=quiet, total=len(shards))


def predict(checkpoint: str | Path, out_dir: str | Path, *, config: Any = None, fold: int | None = None,
            split: str = "validation", smoothing: int | None = None, order_file: str | Path | None = None,
            data: Any = None, quiet: bool = False, device: str | None = None) -> dict:
    """Per-frame predictions CSV and an ABAW submission file for every frame of every video of a split.

    ``split="test"`` predicts the videos the order file lists (image folders without annotation files), one row
    per listed frame in its order. The submission written is checked by :func:`validate_submission`.
    """
    if split not in PREDICT_SPLITS:
        raise ValueError(f"split must be one of {', '.join(PREDICT_SPLITS)}, got {split!r}")
    if split == "test" and not order_file:
        raise ValueError("predicting the test split needs the organisers' order file (--order FILE): it lists the "
                         "test videos and frames")
    order = read_order_file(order_file) if order_file else None
    config, model, ckpt = load_trained(checkpoint, config, device=device)
    fold = ckpt.get("fold") if fold is None else fold
    if split == "test":
        outputs = _test_outputs(config, model, fold=fold, order=order, quiet=quiet)
    else:
        outputs = _split_outputs(config, model, fold=fold, split=split, data=data, quiet=quiet)
    window = smoothing if smoothing is not None else config["eval"]["smoothing"]
    values = {v: frame_values(model.task, outputs.outputs[v], smoothing=window) for v in outputs.videos}
    out_dir = Path(out_dir)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "split": split, "fold": fold, "smoothing": window}
    if distributed.init_distributed().is_main:
        written = {sub: _write_task_files(task, task_outputs, task_values, out_dir / sub, split, order)
                   for sub, task, task_outputs, task_values in per_task(model.task, outputs, values)}
        # A multi-task model writes each task's files in its own folder: the result lists them per task.
        result.update(written[""] if "" in written else {"tasks": written})
    return result


def _write_task_files(task: Any, outputs: VideoOutputs, values: Mapping[str, np.ndarray], out_dir: Path,
                      split: str, order: OrderFile | None) -> dict[str, Any]:
    """One task's predictions CSV and submission file in `out_dir`."""
    csv_path = write_predictions_csv(task, outputs, values, out_dir / f"predictions.{split}.csv")
    sub_path = out_dir / contract.submission_file(task)
    counts = write_submission(task, values, sub_path, order=order)
    labels_read = contract.annotation(task)
    if SUBMISSION_HEADERS.get(labels_read) == (LOCATION_COLUMN, *contract.submission_columns(task)):
        validate_submission(sub_path, labels_read, order)  # an ABAW submission: check it as the organisers
    return {"predictions": str(csv_path), "submission": str(sub_path), **counts}
