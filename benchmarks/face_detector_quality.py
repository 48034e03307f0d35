"""Recall, box accuracy (IoU) and speed of the face detectors `affbench data crop` can use.

    python benchmarks/face_detector_quality.py --synth DIR --out detector_quality.json [--device cpu]

Two kinds of test frame, 640x360, each with one face pasted at a known place on a smooth random background:
- real photos that installed packages ship (scikit-image's astronaut, matplotlib's grace_hopper.jpg): the face
  region around a hand-marked box (forehead to chin, cheek to cheek) pasted at four face widths (40, 60, 90, 140), two random places each;
- SynthAffect aligned 112x112 crops (every 10th frame of every track of DIR, e.g. `affbench data synth --size
  tiny`), pasted at three sizes; their reference box is the whole pasted crop, which also holds hair and
  background, so their IoU is lower than a real photo's by construction.
A face counts as found when a detection overlaps its reference box with IoU >= 0.5 (real) or >= 0.3 (synth).
Speed is frames/s of `detect` on batches of 8 such frames (after one warm-up batch). Not a pytest-benchmark
suite: it measures quality, once; the figures go to --out as JSON and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SCENE = (360, 640)
# Hand-marked face boxes (x0, y0, x1, y1) in the shipped photos.
PHOTO_BOXES = {"astronaut": (183, 72, 268, 177), "grace_hopper": (172, 145, 352, 345)}
REAL_WIDTHS = (40, 60, 90, 140)
PLACEMENTS = 2  # random places per photo and width
SYNTH_SIZES = (80, 112, 180)
BATCH = 8


def real_photos() -> dict[str, np.ndarray]:
    """The face photos that installed packages ship, as uint8 RGB."""
    import matplotlib
    from PIL import Image
    from skimage import data

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {"astronaut": data.astronaut(), "grace_hopper": np.asarray(Image.open(hopper).convert("RGB"))}


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field (upsampled noise), so nothing but the pasted face looks like a face."""
    from PIL import Image

    coarse = rng.integers(40, 215, size=(9, 16, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(SCENE[::-1], Image.BICUBIC))


def paste(scene: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    out = scene.copy()
    out[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return out


def real_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, scene, reference box) for each photo at each face width."""
    from PIL import Image

    cases = []
    for name, photo in real_photos().items():
        x0, y0, x1, y1 = PHOTO_BOXES[name]
        w, h = x1 - x0, y1 - y0
        # Cut the face with a third of a face of context on each side, clipped to the photo.
        cx0, cy0 = max(0, x0 - w // 3), max(0, y0 - h // 3)
        cx1, cy1 = min(photo.shape[1], x1 + w // 3), min(photo.shape[0], y1 + h // 3)
        region = photo[cy0:cy1, cx0:cx1]
        for width in [w_ for w_ in REAL_WIDTHS for _ in range(PLACEMENTS)]:
            scale = width / w
            patch = np.asarray(Image.fromarray(region).resize(
                (round(region.shape[1] * scale), round(region.shape[0] * scale)), Image.BILINEAR))
            px = int(rng.integers(0, SCENE[1] - patch.shape[1]))
            py = int(rng.integers(0, SCENE[0] - patch.shape[0]))
            box = np.array([px + (x0 - cx0) * scale, py + (y0 - cy0) * scale,
                            px + (x1 - cx0) * scale, py + (y1 - cy0) * scale], np.float32)
            cases.append((f"{name}@{width}", paste(background(rng), patch, px, py), box))
    return cases


def synth_cases(root: Path, rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, scene, reference box) for SynthAffect crops (every 10th frame) at each paste size."""
    from PIL import Image

    images = sorted((root / "cropped_aligned").glob("*/*.jpg"))
    chosen = [p for p in images if int(p.stem) % 10 == 0]
    cases = []
    for i, path in enumerate(chosen):
        size = SYNTH_SIZES[i % len(SYNTH_SIZES)]
        patch = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))
        px = int(rng.integers(0, SCENE[1] - size))
        py = int(rng.integers(0, SCENE[0] - size))
        box = np.array([px, py, px + size, py + size], np.float32)
        cases.append((f"{path.parent.name}/{path.name}@{size}", paste(background(rng), patch, px, py), box))
    return cases


def measure(detector, cases, min_iou: float) -> dict:
    """Recall at `min_iou`, mean IoU of the found faces, extra detections per frame, frames/s."""
    from affbench.video.detectors import box_iou

    scenes = [scene for _, scene, _ in cases]
    detector.detect(scenes[:BATCH])  # warm-up: lazy initialisation is not detection time
    started = time.perf_counter()
    found = []
    for i in range(0, len(scenes), BATCH):
        found += detector.detect(scenes[i:i + BATCH])
    seconds = time.perf_counter() - started
    ious, extra, missed = [], 0, []
    for (name, _, box), faces in zip(cases, found, strict=True):
        best = box_iou(box, np.stack([f.box for f in faces]))[0] if faces else np.zeros(0)
        hit = best.size and best.max() >= min_iou
        if hit:
            ious.append(float(best.max()))
        else:
            missed.append(name)
        extra += len(faces) - int(bool(hit))
    return {"frames": len(cases), "recall": len(ious) / len(cases), "mean_iou": float(np.mean(ious)) if ious
            else None, "extra_per_frame": extra / len(cases), "frames_per_second": len(cases) / seconds,
            "missed": missed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth", type=Path, required=True, help="a SynthAffect root (affbench data synth --out)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--detectors", default="mtcnn,haar")
    args = parser.parse_args(argv)

    import torch

    from affbench.video.detectors import create_detector

    rng = np.random.default_rng(0)
    sets = {"real": (real_cases(rng), 0.5), "synthaffect": (synth_cases(args.synth, rng), 0.3)}
    results: dict = {"machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                                 "torch_threads": torch.get_num_threads(), "device": args.device,
                                 "scene": list(SCENE), "batch": BATCH, "load_average_start": os.getloadavg()},
               "detectors": {}}
    for name in args.detectors.split(","):
        detector = create_detector(name, device=args.device)
        results["detectors"][name] = {"version": detector.version, "keypoints": detector.gives_keypoints,
                                      **{kind: measure(detector, cases, min_iou)
                                         for kind, (cases, min_iou) in sets.items()}}
    results["machine"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average {results['machine']['load_average_start'][0]:.1f} -> "
          f"{results['machine']['load_average_end'][0]:.1f} on {results['machine']['cpus']} CPUs")
    print(f"{'detector':10} {'set':12} {'frames':>6} {'recall':>7} {'mean IoU':>8} {'extra/frame':>11} {'frames/s':>9}")
    for name, res in results["detectors"].items():
        for kind in sets:
            r = res[kind]
            iou = f"{r['mean_iou']:.3f}" if r["mean_iou"] is not None else "-"
            print(f"{name:10} {kind:12} {r['frames']:6d} {r['recall']:7.3f} {iou:>8} {r['extra_per_frame']:11.2f} "
                  f"{r['frames_per_second']:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
