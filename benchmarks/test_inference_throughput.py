"""Group ``inference``: whole-video windowed inference with overlap merging, frames/s.

``whole_video_inference`` runs ``affbench.stages.evaluate.run_windows``: every window of the split read from
the shards, the paper's stage-3 model in eval mode, overlapping outputs averaged per frame (one output per
frame of every video). ``baseline_model_only`` runs the same model on the same windows already stacked in
memory, same batch; ``merge_only`` is the per-frame merging alone (``VideoPredictionMerger`` over the model's
outputs). Goal: merging costs <= 5 % of the model's time (merge seconds / model seconds for the same frames).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchdata import video_specs, write_shards
from benchkit import amp_name, autocast, measure
from benchmarks_paths import fresh_dir

import affbench
from affbench.core.config import resolve
from affbench.data.window_shards import WindowShards
from affbench.data.windows import VideoPredictionMerger
from affbench.stages.evaluate import run_windows

MODEL_SECONDS: dict[str, float] = {}  # baseline_model_only's seconds per pass, for merge_only's fraction


@pytest.fixture(scope="module")
def inference_setup(bench_dir, sizes, device):
    """Window shards of a few whole videos, the paper's model in eval mode, the windows in memory."""
    root = fresh_dir(bench_dir / "inference")
    specs = video_specs(sizes.inference_videos, sizes.inference_frames, prefix="infer", seed=2)
    write_shards(root / "shards", specs, dim=sizes.feature_dim, window=sizes.window, stride=sizes.stride)
    shards = WindowShards(root / "shards")
    config = resolve({"name": "bench_inference", "task": "va", "backbone": None,
                      "data": {"dataset": "synthaffect", "window": sizes.window, "stride": sizes.stride}},
                     path="bench_inference.yaml")
    torch.manual_seed(0)
    model = affbench.create_model({**config.to_dict(), "backbone": None, "feature_dim": sizes.feature_dim})
    model = model.to(device).eval()
    windows = list(shards.iter_windows())
    return {"shards": shards, "model": model, "windows": windows,
            "frames": sum(s.n_frames for s in specs), "n_windows": len(windows)}


def _shapes(sizes, setup):
    return {"windows": (setup["n_windows"], sizes.window, sizes.feature_dim), "batch": sizes.inference_batch}


def test_whole_video_inference(benchmark, inference_setup, device, sizes):
    """affbench: run_windows over the shards, merged per frame."""
    benchmark.group = "inference"
    setup = inference_setup

    def infer() -> None:
        outputs = run_windows(setup["model"], setup["shards"].iter_windows(), device=device,
                              batch_size=sizes.inference_batch, amp=amp_name(device))
        assert sum(o.shape[0] for o in outputs.outputs.values()) == setup["frames"]

    measure(benchmark, infer, items=setup["frames"], unit="frames/s", device=device,
            batch_size=sizes.inference_batch, shapes=_shapes(sizes, setup), sizes=sizes,
            videos=sizes.inference_videos)


def _model_outputs(setup, device, batch_size) -> list[np.ndarray]:
    feats = torch.from_numpy(np.stack([w["features"] for w in setup["windows"]])).to(device).float()
    mask = torch.from_numpy(np.stack([w["mask"] for w in setup["windows"]])).to(device)
    outs = []
    with torch.inference_mode(), autocast(device):
        for i in range(0, feats.shape[0], batch_size):
            outs.append(setup["model"](feats[i:i + batch_size], mask[i:i + batch_size]))
    return outs


def test_baseline_model_only(benchmark, inference_setup, device, sizes):
    """The same model on the same windows held in memory as tensors, no reading, no merging."""
    benchmark.group = "inference"
    setup = inference_setup
    rate = measure(benchmark, lambda: _model_outputs(setup, device, sizes.inference_batch), items=setup["frames"],
                   unit="frames/s", device=device, batch_size=sizes.inference_batch,
                   shapes=_shapes(sizes, setup), sizes=sizes, videos=sizes.inference_videos)
    MODEL_SECONDS["per_pass"] = setup["frames"] / rate


def test_merge_only(benchmark, inference_setup, device, sizes):
    """Per-frame merging of the model's window outputs (mean over overlapping windows)."""
    benchmark.group = "inference"
    setup = inference_setup
    outputs = torch.cat(_model_outputs(setup, device, sizes.inference_batch)).float().cpu().numpy()
    windows = setup["windows"]

    def merge() -> None:
        merger = VideoPredictionMerger()
        for w, out in zip(windows, outputs, strict=True):
            merger.add(w["video"], out, w["frames"], int(w["n_frames"]))
        merged = merger.results()
        assert sum(v.shape[0] for v in merged.values()) == setup["frames"]

    rate = measure(benchmark, merge, items=setup["frames"], unit="frames/s", device=device, batch_size=None,
                   shapes={"outputs": tuple(outputs.shape)}, sizes=sizes, videos=sizes.inference_videos)
    if "per_pass" in MODEL_SECONDS:
        merge_seconds = setup["frames"] / rate
        benchmark.extra_info["fraction_of_model_time"] = merge_seconds / MODEL_SECONDS["per_pass"]
