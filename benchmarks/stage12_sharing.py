"""Stages 1-2 of the main job's three `ours` rows, per-task fine-tunes against one shared fine-tune.

Before the shared mode, each task's row fine-tuned the backbone on its own labels and extracted its own
features: three stage 1s and three stage 2s per fold. With ``finetune.tasks: [va, expr, au]`` one fine-tune
learns all three label sets and one extraction serves every task's window shards. This times both on an empty
stage cache (the generated SynthAffect data is shared, not timed), fold 0 by default:

    python benchmarks/stage12_sharing.py --out docs/results/stage12-sharing

writes ``<out>.json`` (every timing, the config digests, the machine) and ``<out>.md`` (the table the README
quotes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

from affbench import __version__
from affbench.core.config import builtin_config, config_digest, load_config
from affbench.home import HOME_ENV, synthaffect_root
from affbench.output import write_json, write_text_atomic
from affbench.published_results import machine_description

CONFIGS = ("synthaffect/va/ours", "synthaffect/expr/ours", "synthaffect/au/ours")
MODES = {"per task": {"finetune.tasks": None}, "shared": {}}


def time_mode(overrides: dict, fold: int, data_dir: Path) -> dict:
    """Stages 1-2 of every config under `overrides` in a fresh stage cache; seconds per config and in all."""
    from affbench.stages.pipeline import prepare_window_shards

    with tempfile.TemporaryDirectory(prefix="affbench-stage12-") as home, patch.dict(os.environ, {HOME_ENV: home}):
        (Path(home) / data_dir.name).symlink_to(data_dir)  # the generated data, not regenerated
        rows = []
        for name in CONFIGS:
            config = load_config(builtin_config(name), overrides)
            started = time.perf_counter()
            prepare_window_shards(config, fold=fold, quiet=True)
            rows.append({"config": name, "digest": config_digest(config),
                         "seconds": round(time.perf_counter() - started, 2)})
    return {"rows": rows, "seconds": round(sum(r["seconds"] for r in rows), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output path without extension (.json and .md are written)")
    parser.add_argument("--fold", type=int, default=0)
    args = parser.parse_args(argv)
    data_dir = synthaffect_root()
    from affbench.stages.stage_inputs import load_stage_inputs

    load_stage_inputs(load_config(builtin_config(CONFIGS[0])), args.fold)  # generates the data, untimed
    modes = {mode: time_mode(overrides, args.fold, data_dir) for mode, overrides in MODES.items()}
    machine = machine_description()
    record = {"affbench_version": __version__, "fold": args.fold, "machine": machine, "modes": modes,
              "speed_up": round(modes["per task"]["seconds"] / modes["shared"]["seconds"], 2)}
    out = Path(args.out)
    write_json(out.with_suffix(".json"), record)
    lines = ["| stage 1 + 2 of the three `ours` rows | " + " | ".join(c.split("/")[1] for c in CONFIGS) + " | all |",
             "|---|" + "---|" * (len(CONFIGS) + 1)]
    for mode, result in modes.items():
        cells = " | ".join(f"{r['seconds']:.1f} s" for r in result["rows"])
        lines.append(f"| {mode} (`finetune.tasks: {'null' if mode == 'per task' else '[va, expr, au]'}`) | {cells} "
                     f"| {result['seconds']:.1f} s |")
    where = (f"{machine['cpu']}, {machine['cores']} cores, {machine['gpu'] or 'no GPU'}, load average "
             f"{machine['load_average_1min']}")
    lines.append(f"\nFold {args.fold}, empty stage cache, {where}; affbench {__version__}. One shared fine-tune "
                 f"is {record['speed_up']:.2f}x faster than three per-task ones.")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
