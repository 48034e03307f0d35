"""Frames/s of the demo's stages 1 and 2 (``configs/synthaffect/va/ours.yaml``: EfficientNet-Lite0 at 64 px on
SynthAffect ``small``), end to end as `affbench suite paper` runs them, each from an empty stage cache.

    python benchmarks/demo_stage_rates.py --out rates.json [--epochs 1] [--rounds 2]

Stage 1 is the fine-tune's own rate (frames over its epochs' seconds, from its manifest: the frame shards are
written before its clock starts); stage 2 is the extractor's frames over the seconds of `extract_features`
with the fine-tune already cached (the frame shards of extraction written in a first, untimed call). Each
round starts from an empty stage cache (a temporary one); the JSON holds every round and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "synthaffect" / "va" / "ours.yaml"


def one_round(config, inputs) -> dict:
    """Stages 1 and 2 of fold 0 in a throwaway stage cache."""
    from affbench.config_profile import _throwaway_cache
    from affbench.train.extract import extract_features
    from affbench.train.finetune import finetune

    with _throwaway_cache():
        tuned = finetune(config, fold=0, quiet=True, inputs=inputs)
        history = tuned.manifest["history"]
        finetune_rate = sum(h["frames"] for h in history) / history[-1]["seconds"]
        # Stage 2: its frame shards written (untimed) by a first extraction, whose features are then removed.
        first = extract_features(config, fold=0, quiet=True, inputs=inputs)
        shutil.rmtree(first.directory)
        start = time.perf_counter()
        features = extract_features(config, fold=0, quiet=True, inputs=inputs)
        seconds = time.perf_counter() - start
    return {"finetune_frames_per_s": finetune_rate, "finetune_frames": sum(h["frames"] for h in history),
            "extract_frames_per_s": features.extracted_frames / seconds, "extract_frames": features.extracted_frames}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs per round (the demo runs 3)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    import affbench
    from affbench.train.config import load_config
    from affbench.train.stage_inputs import load_stage_inputs

    config = load_config(CONFIG, {"finetune.epochs": args.epochs, "device": "cpu"})
    inputs = load_stage_inputs(config, 0)  # SynthAffect small: generated under $AFFBENCH_HOME on first use
    rounds = []
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        rounds.append(one_round(config, inputs))
        load.append(os.getloadavg()[0])
    result = {"config": "configs/synthaffect/va/ours.yaml", "affbench": affbench.__file__, "epochs": args.epochs,
              "rounds": rounds, "load_average": load, "cpu_count": os.cpu_count()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
