"""One rank of a stage 1 or stage 2 run under torchrun on SynthAffect tiny (run by test_stage_ddp.py).

usage: torchrun --nproc_per_node N stage_ddp_script.py SYNTH_ROOT finetune|extract RESULT_DIR CONFIG_JSON
Writes RESULT_DIR/rank<R>.json: what this rank returned and how many frames its backbone ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_fixtures import forwards, tiny_config  # noqa: E402

from affbench.stages import distributed  # noqa: E402
from affbench.stages import finetune as stage1  # noqa: E402
from affbench.stages.extract import extract_features  # noqa: E402


def main() -> None:
    synth_root, stage, result_dir, top = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
    # The new layers' dropout draws its masks per rank: off, so 1 and N processes compute the same function.
    stage1.HEAD_DROPOUT = 0.0
    config = tiny_config(Path(synth_root), **top)
    if stage == "finetune":
        result = stage1.finetune(config, fold=0, quiet=True)
        out = {"weights": str(result.weights_path), "weights_id": result.weights_id, "reused": result.reused,
               "history": result.manifest["history"], "world_size": result.manifest.get("world_size")}
    else:
        features = extract_features(config, fold=0, quiet=True)
        out = {"directory": str(features.directory), "extracted": features.extracted_frames}
    out["forwards"] = forwards()
    result_dir.mkdir(parents=True, exist_ok=True)
    (result_dir / f"rank{distributed.rank()}.json").write_text(json.dumps(out))
    distributed.cleanup()


if __name__ == "__main__":
    main()
