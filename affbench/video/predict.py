"""`affbench predict --video FILE --run RUN_DIR`: every frame of your own video through a trained run.

The video is cropped as by `affbench data crop` (crops kept in the output folder, reused when the same video
is predicted again), each face track goes through the run's own backbone and preprocessing (its fine-tuned
weights from the stage cache, checked against the run's ``data_provenance.json``), then through the run's
temporal model over the whole track: windows as in training (``data.window`` / ``data.stride``), merged so
every frame gets one output (``affbench.data.windows``), values as ``evaluate`` makes them (smoothing, tuned AU
thresholds). Frames where a track has no face are rows with ``face=0`` and empty task columns: the model's
guess there is never passed off as a prediction.

Outputs in OUT: ``<video>.predictions.csv`` (``video,track,frame,time_s,face,<task columns>``) and
``<video>.traces.png``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affbench import task_contract as contract
from affbench.data.affwild2_layout import IMAGES_DIR
from affbench.data.records import VideoRecord
from affbench.output import write_text_atomic
from affbench.video.crop import CropOptions, crop_videos, manifest_path, video_name


@dataclass
class TrackPrediction:
    """One face track's per-frame outputs: values [n, label_dim], probabilities [n, C] or None, face [n]."""

    track: str
    values: np.ndarray
    probabilities: np.ndarray | None
    face: np.ndarray


def _checkpoint_and_run_dir(run: Path) -> tuple[Path, Path]:
    run = Path(run)
    checkpoint = run / "best.pt" if run.is_dir() else run
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no checkpoint; --run takes a trained run directory (with best.pt) "
                                "or a checkpoint file")
    return checkpoint, checkpoint.parent


def run_backbone(config: Mapping[str, Any], run_dir: Path):
    """The run's image backbone with the weights it extracted its features with (fine-tuned ones from the cache)."""
    from affbench.stages import feature_cache as cache
    from affbench.stages.finetune import WEIGHTS_FILE, build_backbone, finetuned_weights_id, load_finetuned

    if config.get("backbone") is None:
        raise ValueError(f"{run_dir}: the run's config has backbone: null (it trained on given features); "
                         "predicting a video needs a run with an image backbone")
    provenance_path = run_dir / "data_provenance.json"
    try:
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))["train"]
        used = provenance["backbone"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{provenance_path}: missing or without train.backbone; accepted: the file `affbench "
                         "train` writes into every run directory") from None
    spec = config["backbone"]
    backbone = build_backbone(spec)
    weights_id = str(backbone.weights_id)
    tuned = provenance.get("finetune")
    if tuned:
        weights = cache.stage_dir("finetune", tuned["key"]) / WEIGHTS_FILE
        if not weights.is_file() or finetuned_weights_id(weights) != tuned["weights_id"]:
            raise FileNotFoundError(f"{weights}: the run's fine-tuned backbone ({tuned['weights_id'][:19]}...) is not "
                                    f"in the stage cache ({cache.cache_root()}); rerun `affbench train` on this "
                                    "config and fold with the same AFFBENCH_HOME to rebuild it")
        load_finetuned(backbone, weights)
        weights_id = tuned["weights_id"]
    identity = cache.backbone_identity(spec, weights_id, backbone.preprocess)
    if cache.stable_hash(identity) != cache.stable_hash(used):
        raise ValueError(f"{provenance_path}: the run's features came from backbone {used.get('name')} "
                         f"({used.get('weights_id')}), but this install builds {identity['name']} "
                         f"({identity['weights_id']}); accepted: the plugin and weights the run was trained with")
    return backbone


@torch.inference_mode()
def track_features(backbone, folder: Path, n_frames: int, *, batch_size: int, device: torch.device
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, D] float32, zeros where no face; has_image [n]) of one track folder of crops."""
    from affbench.data.frame_shards import decode_jpeg
    from affbench.stages.finetune import backbone_threads
    from affbench.stages.frame_batches import batch_to_input, image_model_on

    frames = sorted(int(p.stem) for p in folder.glob("*.jpg"))
    features = np.zeros((n_frames, int(backbone.out_dim)), np.float32)
    has_image = np.zeros(n_frames, bool)
    backbone = image_model_on(backbone, device).eval()
    with backbone_threads():
        for start in range(0, len(frames), batch_size):
            chunk = frames[start:start + batch_size]
            images = np.stack([decode_jpeg((folder / f"{f:05d}.jpg").read_bytes()) for f in chunk])
            out = backbone(batch_to_input(images, backbone.preprocess, device)).float().cpu().numpy()
            features[np.asarray(chunk) - 1] = out
            has_image[np.asarray(chunk) - 1] = True
    return features, has_image


def predict_tracks(config: Mapping[str, Any], model, backbone, crops_root: Path, manifest: Mapping[str, Any], *,
                   device: torch.device, smoothing: int | None, quiet: bool) -> list[TrackPrediction]:
    """Per-frame predictions of every track of one cropped video."""
    from affbench.data.missing_faces import apply_policy
    from affbench.data.window_shards import cut_windows
    from affbench.stages.evaluate import frame_values, run_windows, task_probabilities

    task = model.task
    n = int(manifest["frames"])
    data = config["data"]
    window = smoothing if smoothing is not None else config["eval"]["smoothing"]
    out = []
    for track in manifest["tracks"]:
        name = track["name"]
        rows, has_image = track_features(backbone, crops_root / IMAGES_DIR / name, n,
                                         batch_size=int(config["extract"]["batch_size"]), device=device)
        features, mask = apply_policy(rows, has_image, data["missing_faces"])
        label_dim = int(task.label_dim)
        record = VideoRecord(name, manifest["video"], [""] * n, np.zeros((n, label_dim), np.float32),
                             np.zeros(n, bool))
        windows = cut_windows(record, features, mask, window=int(data["window"]), stride=int(data["stride"]))
        outputs = run_windows(model, windows, device=device, batch_size=int(config["eval"]["batch_size"]),
                              amp=config["train"]["amp"], quiet=quiet)
        raw = outputs.outputs[name]
        out.append(TrackPrediction(name, frame_values(task, raw, smoothing=window),
                                   task_probabilities(task, raw), has_image))
    return out


def task_columns(task) -> tuple[list[str], list[str]]:
    """(value columns, probability columns) of a task in the per-frame CSV."""
    return list(contract.prediction_columns(task)), list(contract.probability_columns(task))


def _cells(task, values: np.ndarray) -> list[str]:
    """One frame's values as the CSV shows them: a class task's class name, integers, or 4-decimal numbers."""
    if contract.output_kind(task) == "classes":
        return [task.label_names[int(values[0])]]
    if contract.integer_values(task):
        return [str(int(v)) for v in values]
    return [f"{v:.4f}" for v in values]


def predictions_csv(task, manifest: Mapping[str, Any], tracks: list[TrackPrediction]) -> str:
    """The tidy CSV text: one row per frame and track, task columns empty where the track has no face."""
    values_cols, prob_cols = task_columns(task)
    fps = float(manifest["fps"]) or 1.0
    start = float(manifest.get("start_time_s") or 0.0)
    lines = [",".join(["video", "track", "frame", "time_s", "face", *values_cols, *prob_cols])]
    for track in tracks:
        for i in range(track.values.shape[0]):
            row = [manifest["video"], track.track, str(i + 1), f"{start + i / fps:.3f}", str(int(track.face[i]))]
            if not track.face[i]:
                row += [""] * (len(values_cols) + len(prob_cols))
            else:
                row += _cells(task, track.values[i])
                if track.probabilities is not None and prob_cols:
                    row += [f"{p:.4f}" for p in track.probabilities[i]]
            lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def _crops(video: Path, out: Path, options: CropOptions, quiet: bool) -> dict:
    """The video's crop manifest in `out`: reused when that video was cropped there before, else made now."""
    existing = manifest_path(out, video_name(video))
    if existing.is_file():
        manifest = json.loads(existing.read_text(encoding="utf-8"))
        if manifest.get("source") == str(video.resolve()):
            return manifest
    return crop_videos(video, out, options, quiet=quiet)[0]


def predict_video(video: str | os.PathLike[str], run: str | os.PathLike[str], *, out: str | os.PathLike[str] | None,
                  options: CropOptions | None = None, smoothing: int | None = None, quiet: bool = False) -> dict:
    """Crop `video`, predict every frame of every face track with the run in `run`; write the CSV and the plot."""
    from affbench.stages.evaluate import load_trained
    from affbench.video.traces_plot import plot_tracks

    video = Path(video)
    options = options or CropOptions()
    if video.is_dir():
        raise IsADirectoryError(f"{video}: --video takes one video file (crop a folder with `affbench data crop`)")
    checkpoint, run_dir = _checkpoint_and_run_dir(Path(run))
    device = torch.device(options.device)
    config, model, _ = load_trained(checkpoint, device=device)
    backbone = run_backbone(config, run_dir)
    out_dir = Path(out) if out is not None else Path(f"{video_name(video)}-predictions")
    manifest = _crops(video, out_dir, options, quiet)
    tracks = predict_tracks(config, model, backbone, out_dir, manifest, device=device, smoothing=smoothing,
                            quiet=quiet)
    csv_path = write_text_atomic(out_dir / f"{manifest['video']}.predictions.csv",
                                 predictions_csv(model.task, manifest, tracks))
    plot_path = plot_tracks(model.task, manifest, tracks, out_dir / f"{manifest['video']}.traces.png",
                            title=f"{manifest['video']}: {model.task.name} predictions of run "
                                  f"{config['name']}, {run_dir.name}")
    return {"csv": str(csv_path), "plot": str(plot_path), "crops": str(out_dir), "tracks": len(tracks),
            "frames": int(manifest["frames"])}
