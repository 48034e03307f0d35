"""Where one extraction pass spends its time, per frame: the pieces of stage 2 timed apart on the same frames.

    python benchmarks/extraction_profile.py --out profile.json [--backbone clip_small|efficientnet_lite0_64]

On the `extraction` group's SynthAffect set (two videos, about 600 face crops of 112 px): reading the samples
from frame shards, decoding the JPEGs as affbench does (PIL) and as a batch (``torchvision.io.decode_jpeg`` on a
list), preprocessing a decoded JPEG (resize to the input size and normalise, on the CPU), preprocessing a stored
crop (normalise only) and the backbone's forward pass, at batch 32 with the extractor's thread policy. The
pieces run in turn, five times; the JSON holds the median and the spread of each in ms per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the affbench command sets it, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKBONES = {
    "clip_small": None,  # the extraction group's CLIP test config
    "efficientnet_lite0_64": {"name": "timm", "options": {"model": "efficientnet_lite0", "image_size": 64}},
}
BATCH = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--backbone", choices=list(BACKBONES), default="clip_small")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from benchkit import sizes_for
    from test_extraction_throughput import BACKBONES as CLIP
    from test_extraction_throughput import extraction_config
    from torchvision.io import decode_jpeg as decode_batch

    from affbench.data.frame_shards import FrameShards, decode_jpeg, decoded_crops
    from affbench.model import input_pixels, preprocess_images
    from affbench.stages.finetune import backbone_threads, build_backbone
    from affbench.stages.stage_inputs import ensure_frame_shards, load_stage_inputs

    spec = BACKBONES[args.backbone] or CLIP["clip_small"]
    sizes = sizes_for("cpu")
    config = extraction_config(spec, sizes.extract_frames_small, BATCH, sizes)
    inputs = load_stage_inputs(config, None)
    backbone = build_backbone(config["backbone"]).eval()
    preprocess = backbone.preprocess
    records = [r for r in inputs.records if r.has_image.any()]
    jpegs = [(inputs.dataset.image_root / image).read_bytes() for r in records for image in r.images if image]
    shards = ensure_frame_shards(inputs.records, inputs.dataset, task=inputs.task,
                                 provenance=inputs.dataset_provenance, selection={"stage": "extract"},
                                 stamps=inputs.stamps_digest(inputs.records), preprocess=preprocess, quiet=True)
    n = len(jpegs)
    decoded = np.stack([decode_jpeg(j) for j in jpegs])
    crops = input_pixels(decoded, preprocess).numpy()
    images = preprocess_images(crops, preprocess)
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]

    def batches(array):
        return [array[i:i + BATCH] for i in range(0, n, BATCH)]

    def forward() -> None:
        with torch.inference_mode():
            for chunk in batches(images):
                backbone(chunk)

    pieces = {
        "read frame shards": lambda: list(FrameShards(shards)),
        "decode JPEG (PIL, as affbench)": lambda: [decode_jpeg(j) for j in jpegs],
        "decode JPEG (torchvision, a list)": lambda: decode_batch(tensors),
        "preprocess a decoded JPEG (resize + normalise)": lambda: [preprocess_images(b, preprocess)
                                                                   for b in batches(decoded)],
        "preprocess a stored crop (normalise)": lambda: [preprocess_images(b, preprocess) for b in batches(crops)],
        "backbone forward": forward,
    }
    timings: dict[str, list[float]] = {name: [] for name in pieces}
    with backbone_threads():
        forward()  # warm-up
        for _ in range(args.rounds):
            for name, piece in pieces.items():
                start = time.perf_counter()
                piece()
                timings[name].append((time.perf_counter() - start) * 1e3 / n)
    result = {
        "backbone": args.backbone, "input": preprocess.to_dict(), "frames": n, "batch": BATCH,
        "jpeg": {"shape": list(decoded.shape[1:]), "mean_bytes": float(np.mean([len(j) for j in jpegs]))},
        "frame_shards": "decoded crops" if decoded_crops(preprocess) is not None else "jpeg",
        "ms_per_frame": {name: {"median": statistics.median(t), "min": min(t), "max": max(t)}
                         for name, t in timings.items()},
        "load_average": os.getloadavg()[0], "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, t in result["ms_per_frame"].items():
        print(f"{name:<50} {t['median']:7.3f} ms/frame  ({t['min']:.3f}-{t['max']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
