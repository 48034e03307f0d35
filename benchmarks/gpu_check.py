"""The GPU figures in one go (under 10 minutes on one H100/H200), written to one JSON file.

    python benchmarks/gpu_check.py --out gpu_check.json          # needs a CUDA GPU

Measures, on the visible GPU (``--device``, default cuda):

1. ViT-B/16 extraction end to end vs the same backbone on pre-decoded tensors (goal >= 0.9x) and CLIP ViT-B/16
   bf16 forward frames/s at batch 32 and 256 (goal >= 8,000 on an H100/H200): the ``backbone`` and
   ``extraction`` benchmark groups, run through pytest-benchmark;
2. the paper config's own components (``affbench bench --config configs/paper/va/ours.yaml`` with random CLIP
   weights, as nothing may be downloaded): the stage 1 training step at batch 256, stage 3 steps/s at batch 32
   of [300, 768] windows, windowed inference;
3. the projected hours of the paper suite on Aff-Wild2 (75 runs) from those rates.

Random weights time like trained ones. The JSON holds every figure, its goal and whether it was met, the
machine, and the raw pytest-benchmark results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SELECT = "backbone_clip_vit_b16 or extraction or baseline_forward_only"
CLIP_FPS_GOAL = 8000.0
EXTRACTION_RATIO_GOAL = 0.9


def _goal(name: str, value: float | None, goal: float, unit: str) -> dict:
    return {"name": name, "value": value, "unit": unit, "goal": f">= {goal:g}",
            "met": None if value is None else value >= goal}


def suites(device: str) -> tuple[list, dict, float]:
    """Run the backbone and extraction groups on `device`; their results and machine info."""
    from affbench.bench_report import load_results

    with tempfile.TemporaryDirectory(prefix="affbench-gpu-check-") as tmp:
        out = Path(tmp) / "bench.json"
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
                                f"--device={device}", "-k", SELECT, f"--benchmark-json={out}"], cwd=HERE.parent)
        if not out.is_file():
            raise SystemExit(f"gpu_check: the benchmark suites failed (pytest exit {code})")
        return (*load_results(out), time.perf_counter() - started)


def paper_components(device: str) -> tuple[dict, object]:
    """The paper config's own components at its batch sizes (random CLIP ViT-B/16 weights), and the config."""
    from affbench.config_profile import backbone_figures, temporal_figures
    from affbench.core.config import find_config, load_config
    from affbench.devices import resolve_device
    from affbench.stages.finetune import backbone_threads

    config = load_config(find_config("paper/va/ours.yaml"),
                         {"backbone.options.pretrained": None})  # random weights: nothing is downloaded
    torch_device = resolve_device(device)
    with backbone_threads():
        figures = backbone_figures(config, torch_device, rounds=5, quick=False)
    figures += temporal_figures(config, 768, torch_device, rounds=5, quick=False)
    return {f.what: {"rate": f.rate, "unit": f.unit, "at": f.note} for f in figures}, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file to write (default: %(default)s)")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (default: cuda)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible; run it on the GPU machine", file=sys.stderr)
        return 2
    from affbench.bench_report import find, paper_suite_projection, ratio

    results, machine, suite_seconds = suites(args.device)
    components, config = paper_components(args.device)
    clip = {r.name: r.items_per_second for r in results if r.name.startswith("backbone_clip_vit_b16")}
    extraction = ratio(results, "extraction[clip_vit_b16]", "baseline_forward_only[clip_vit_b16]")
    extract = find(results, "extraction[clip_vit_b16]")
    train_rate = components["stage 3 training step"]["rate"]
    batch = int(config["train"]["batch_size"])
    figures = [
        _goal("ViT-B/16 extraction / forward on pre-decoded tensors", extraction, EXTRACTION_RATIO_GOAL, "x"),
        _goal("CLIP ViT-B/16 bf16 forward, best batch", max(clip.values(), default=None), CLIP_FPS_GOAL,
              "frames/s"),
        {"name": "CLIP ViT-B/16 bf16 forward by batch", "value": clip, "unit": "frames/s"},
        {"name": "stage 3 steps/s (paper model, batch 32 x 300 x 768)", "value": train_rate / batch, "unit": "steps/s"},
        {"name": "paper config components", "value": components},
    ]
    projection = paper_suite_projection(
        finetune_fps=components["backbone training step (stage 1)"]["rate"],
        extract_fps=extract.items_per_second if extract else components["backbone forward"]["rate"],
        train_windows_per_s=train_rate, inference_fps=components["windowed inference"]["rate"],
        epochs=int(config["train"]["epochs"]), finetune_epochs=int(config["finetune"]["epochs"]))
    record = {"device": torch.cuda.get_device_name(torch.device(args.device)), "machine": machine,
              "figures": figures, "paper_suite_projection": projection, "suite_seconds": round(suite_seconds, 1),
              "benchmarks": [vars(r) for r in results]}
    Path(args.out).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    for figure in figures[:4]:
        print(f"{figure['name']}: {figure['value']} {figure.get('unit', '')} "
              f"{'' if 'met' not in figure else ('met' if figure['met'] else 'MISSED')}")
    total = projection["total_hours"]
    print(f"paper suite on Aff-Wild2 (75 runs): {'n/a' if total is None else f'{total:.1f} h'}; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
