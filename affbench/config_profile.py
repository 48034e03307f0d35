"""`affbench bench --config FILE`: profile one config's own components at its own options, and project the
time of one run of it (one fold) on its dataset on this machine.

Measured, each as the median of a few timed rounds after a warm-up:

* backbone forward, frames/s, at ``extract.batch_size`` (fp16 autocast on a GPU when ``extract.amp``);
* backbone training step (stage 1), frames/s, at ``finetune.batch_size`` frames per step;
* extraction end to end, frames/s: frame shards of a few of the dataset's videos -> JPEG decode -> backbone ->
  per-video features, in a throwaway cache (nothing is left in yours);
* stage 3 training step, windows/s: the config's temporal model and head on ``[train.batch_size,
  data.window, D]`` features, loss, backward, AdamW;
* windowed inference, frames/s: the model on ``eval.batch_size`` windows of the config's window and stride
  (``data.stride`` new frames per window, the merging of overlaps excluded).

The projection multiplies these rates by the work of one run of this config on fold 0 of its dataset: frames
to extract, fine-tuning frames x epochs, training windows x epochs, validation frames x epochs (every epoch
scores one split). Input rates are synthetic (zeros for labels, random pixels): the timings depend on shapes,
not values.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class Figure:
    """One measured rate of the config's components."""

    what: str
    rate: float | None  # items per second; None: not applicable to this config
    unit: str
    note: str = ""


@dataclass
class Work:
    """One stage's work for one run of the config, and the rate it goes at."""

    what: str
    amount: float
    unit: str
    rate: float | None

    @property
    def seconds(self) -> float | None:
        return self.amount / self.rate if self.rate else None


def _timed_rate(step: Callable[[], int], device: torch.device, rounds: int) -> float:
    """Items per second of `step` (returns the items it handled): one warm-up, then the median of `rounds`."""
    def once() -> float:
        start = time.perf_counter()
        items = step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return items / max(time.perf_counter() - start, 1e-9)

    once()
    return statistics.median(once() for _ in range(max(1, rounds)))


def _images(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)


def backbone_figures(config: Mapping[str, Any], device: torch.device, *, rounds: int, quick: bool) -> list[Figure]:
    """Forward and training-step frames/s of the config's backbone at its batch sizes."""
    from affbench.stages.finetune import (
        BackboneWithHead,
        _new_head,
        build_backbone,
        set_train_mode,
        stage1_gradients,
    )
    from affbench.stages.frame_batches import batch_to_input, image_model_on

    if config.get("backbone") is None:
        return [Figure("backbone forward", None, "frames/s", "no backbone: the config reads features"),
                Figure("backbone training step (stage 1)", None, "frames/s", "no backbone")]
    backbone = image_model_on(build_backbone(config["backbone"]), device)
    size = int(backbone.preprocess.image_size)
    extract_batch = 2 if quick else int(config["extract"]["batch_size"])
    tune_batch = 2 if quick else int(config["finetune"]["batch_size"])
    amp = device.type == "cuda"
    forward_images = _images(extract_batch, size)
    backbone.eval()

    def forward() -> int:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16,
                                                     enabled=amp and bool(config["extract"]["amp"])):
            backbone(batch_to_input(forward_images, backbone.preprocess, device))
        return extract_batch

    forward_rate = _timed_rate(forward, device, rounds)
    model = image_model_on(BackboneWithHead({"backbone": backbone, "head": _new_head(int(backbone.out_dim), 2)}),
                           device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    tune_images = _images(tune_batch, size)
    set_train_mode(model, freeze_batchnorm=config["finetune"]["batchnorm"] == "frozen")

    def train_step() -> int:
        with stage1_gradients(model, config):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = model(batch_to_input(tune_images, backbone.preprocess, device)).float().pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return tune_batch

    step_rate = _timed_rate(train_step, device, rounds)
    return [Figure("backbone forward", forward_rate, "frames/s", f"batch {extract_batch}, {size}x{size}"),
            Figure("backbone training step (stage 1)", step_rate, "frames/s", f"batch {tune_batch}")]


@contextlib.contextmanager
def _throwaway_cache() -> Iterator[None]:
    """Caches written meanwhile go to a temporary folder, removed afterwards."""
    from affbench.home import HOME_ENV

    before = os.environ.get(HOME_ENV)
    with tempfile.TemporaryDirectory(prefix="affbench-profile-") as home:
        os.environ[HOME_ENV] = home
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(HOME_ENV, None)
            else:
                os.environ[HOME_ENV] = before


def extraction_figure(config: Mapping[str, Any], inputs: Any, *, videos: int) -> Figure:
    """End-to-end extraction frames/s on the first `videos` videos (with images) of the config's dataset."""
    from affbench.data.frame_shards import decoded_crops
    from affbench.devices import resolve_device
    from affbench.stages.extract import extract_videos
    from affbench.stages.finetune import build_backbone
    from affbench.stages.frame_batches import loader_workers
    from affbench.stages.stage_inputs import ensure_frame_shards

    if config.get("backbone") is None:
        return Figure("extraction end to end", None, "frames/s", "no backbone")
    chosen = [r for r in inputs.records if r.has_image.any()][:videos]
    with _throwaway_cache(), tempfile.TemporaryDirectory(prefix="affbench-features-") as target:
        backbone = build_backbone(config["backbone"])
        # The frame shards of these videos are written first (untimed: a real run writes them once for all).
        ensure_frame_shards(chosen, inputs.dataset, task=inputs.task, provenance=inputs.dataset_provenance,
                            selection={"stage": "extract"}, stamps=inputs.stamps_digest(chosen),
                            preprocess=backbone.preprocess, quiet=True)
        start = time.perf_counter()
        frames = extract_videos(config, inputs, backbone, Path(target), chosen, quiet=True,
                                shard_records=chosen)
        seconds = time.perf_counter() - start
    crops = decoded_crops(backbone.preprocess) is not None
    workers = loader_workers(config["extract"]["workers"], crops=crops, device=resolve_device(config["device"]))
    return Figure("extraction end to end", frames / max(seconds, 1e-9), "frames/s",
                  f"{frames} frames of {len(chosen)} videos, batch {config['extract']['batch_size']}, "
                  f"{'decoded crops' if crops else 'JPEG'}, {workers} workers")


def temporal_figures(config: Mapping[str, Any], feature_dim: int, device: torch.device, *, rounds: int,
                     quick: bool) -> list[Figure]:
    """Stage 3 training windows/s and windowed inference frames/s of the config's model."""
    from affbench.stages.pipeline import build_model

    window, stride = int(config["data"]["window"]), int(config["data"]["stride"])
    train_batch = 2 if quick else int(config["train"]["batch_size"])
    eval_batch = 2 if quick else int(config["eval"]["batch_size"])
    model = build_model(config, feature_dim).to(device)
    task = model.task
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    amp = device.type == "cuda" and config["train"]["amp"] in ("bf16", "fp16")
    dtype = torch.float16 if config["train"]["amp"] == "fp16" else torch.bfloat16
    feats = torch.randn(train_batch, window, feature_dim, device=device)
    mask = torch.ones(train_batch, window, dtype=torch.bool, device=device)
    labels = torch.zeros(train_batch, window, int(task.label_dim), device=device)
    model.train()

    def train_step() -> int:
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            out = model(feats, mask)
        loss = task.loss(out.float(), labels, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return train_batch

    train_rate = _timed_rate(train_step, device, rounds)
    eval_feats = torch.randn(eval_batch, window, feature_dim, device=device)
    eval_mask = torch.ones(eval_batch, window, dtype=torch.bool, device=device)
    model.eval()

    def infer() -> int:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=amp):
            model(eval_feats, eval_mask).float().cpu()
        return eval_batch * stride  # each window adds `stride` new frames of a video

    infer_rate = _timed_rate(infer, device, rounds)
    return [Figure("stage 3 training step", train_rate, "windows/s", f"batch {train_batch} x {window} x {feature_dim}"),
            Figure("windowed inference", infer_rate, "frames/s", f"batch {eval_batch}, stride {stride}")]


def run_work(config: Mapping[str, Any], inputs: Any) -> dict[str, float]:
    """The amounts of one run of the config on `inputs` (fold 0): frames, windows, epochs."""
    from affbench.data.windows import window_starts
    from affbench.stages.finetune import finetune_frames

    window, stride = int(config["data"]["window"]), int(config["data"]["stride"])
    extract_frames = float(sum(int(r.has_image.sum()) for r in inputs.records))
    tune = 0.0
    if config.get("backbone") is not None and config["finetune"]["enabled"]:
        tune = float(finetune_frames(config, inputs).n_frames) * int(config["finetune"]["epochs"])
    train_windows = sum(len(window_starts(r.n_frames, window, stride)) for r in inputs.train)
    validation_frames = sum(r.n_frames for r in inputs.validation)
    epochs = int(config["train"]["epochs"])
    return {"extract_frames": extract_frames if config.get("backbone") is not None else 0.0,
            "finetune_frames": tune, "train_windows": float(train_windows * epochs),
            "validation_frames": float(validation_frames * epochs), "epochs": float(epochs)}


@dataclass
class ConfigProfile:
    config_path: str | None
    device: str
    figures: list[Figure]
    work: list[Work]
    dataset: str

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config_path, "device": self.device, "dataset": self.dataset,
                "figures": [vars(f) for f in self.figures],
                "projection": [{**vars(w), "seconds": w.seconds} for w in self.work]}


def profile_config(config: Mapping[str, Any], *, device: str | None = None, quick: bool = False,
                   rounds: int = 3, videos: int = 2) -> ConfigProfile:
    """Measure the config's components and project one run (fold 0) on its dataset."""
    from affbench.devices import resolve_device
    from affbench.stages.finetune import backbone_threads, build_backbone
    from affbench.stages.stage_inputs import load_stage_inputs

    torch_device = resolve_device(device if device is not None else config.get("device"))
    rounds = 1 if quick else rounds
    fold = 0 if int(config["data"]["folds"]) > 1 else None
    inputs = load_stage_inputs(config, fold)
    with backbone_threads():
        figures = backbone_figures(config, torch_device, rounds=rounds, quick=quick)
        figures.append(extraction_figure(config, inputs, videos=1 if quick else videos))
    if config.get("backbone") is not None:
        feature_dim = int(build_backbone(config["backbone"]).out_dim)
    else:
        feature_dim = int(config["feature_dim"] or 768)
    figures += temporal_figures(config, feature_dim, torch_device, rounds=rounds, quick=quick)
    rate = {f.what: f.rate for f in figures}
    amounts = run_work(config, inputs)
    work = [
        Work("stage 1: fine-tune", amounts["finetune_frames"], "frames", rate["backbone training step (stage 1)"]),
        Work("stage 2: extract every video", amounts["extract_frames"], "frames", rate["extraction end to end"]),
        Work(f"stage 3: train {amounts['epochs']:.0f} epochs", amounts["train_windows"], "windows",
             rate["stage 3 training step"]),
        Work(f"stage 3: score {amounts['epochs']:.0f} epochs of validation", amounts["validation_frames"], "frames",
             rate["windowed inference"]),
    ]
    return ConfigProfile(getattr(config, "path", None), str(torch_device), figures,
                         [w for w in work if w.amount], str(config["data"]["dataset"]["name"]))


def format_profile(profile: ConfigProfile, *, quick: bool) -> str:
    """The printed summary: one table of rates, one of the projected run."""
    from affbench.bench_report import _rate, format_duration

    lines = [f"config {profile.config_path or '<config>'} on {profile.device}, dataset {profile.dataset}", "",
             f"{'component':<40} {'rate':>12}  {'unit':<10} at"]
    lines.append("-" * 80)
    for f in profile.figures:
        lines.append(f"{f.what:<40} {_rate(f.rate) if f.rate else 'n/a':>12}  {f.unit:<10} {f.note}")
    lines += ["", "One run of this config (fold 0) on this machine:"]
    total = 0.0
    for w in profile.work:
        total += w.seconds or 0.0
        lines.append(f"  {w.what:<44} {w.amount:>14,.0f} {w.unit:<8} {format_duration(w.seconds):>10}")
    lines.append(f"  {'total':<44} {'':>14} {'':<8} {format_duration(total):>10}")
    if quick:
        lines.append("\n--quick: tiny batches and one round; figures not graded at quick sizes")
    return "\n".join(lines)
