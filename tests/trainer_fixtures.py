"""Shared fixtures of the stage-3 tests: tiny window shards from random features, and tiny configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affbench.core.config import Config, resolve
from affbench.data.records import VideoRecord
from affbench.data.window_shards import write_window_shards
from affbench.stages.pipeline import WindowData

LABEL_DIM = {"va": 2, "expr": 1, "au": 12}
FEATURE_DIM = 6


# The trainer SIGKILLs itself right after this optimizer step when the script below runs with it set, so
# tests can prove that a killed run resumes to the same parameters as an uninterrupted one.
KILL_AFTER_STEP_ENV = "AFFBENCH_KILL_AFTER_STEP"


def make_records(task: str, lengths: list[int], seed: int, prefix: str) -> list[tuple[VideoRecord, Any, Any]]:
    """Videos with random features, labels related to the features (so training can learn), some gaps."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        feats = rng.normal(size=(n, FEATURE_DIM)).astype(np.float32)
        signal = np.tanh(feats[:, :2])
        if task == "va":
            labels = signal.astype(np.float32)
        elif task == "expr":
            labels = ((feats[:, 0] > 0).astype(np.float32) * 4 + (feats[:, 1] > 0)).reshape(-1, 1)
        else:
            labels = (feats[:, np.arange(12) % FEATURE_DIM] > 0).astype(np.float32)
        valid = rng.random(n) > 0.1
        images = [f"{prefix}{i}/{j + 1:05d}.jpg" if rng.random() > 0.15 else "" for j in range(n)]
        record = VideoRecord(f"{prefix}{i}", f"{prefix}{i}", images, labels, valid)
        out.append((record, feats, record.has_image))
    return out


TINY_SPLITS = (("train", [40, 33, 9, 51, 27, 45], 0), ("selection", [31, 22], 50), ("validation", [37, 12, 29], 100))


def write_split(directory: Path, task: str, split: str, records: list, *, window: int = 16, stride: int = 10,
                maxcount: int = 4) -> Path:
    """One split's window shards of `records` (as make_records returns them)."""
    write_window_shards(directory, records, window=window, stride=stride,
                        manifest_extra={"task": {"name": task}, "split": split, "missing_faces": {"policy": "mask"},
                                        "videos": [r.video for r, _, _ in records]}, maxcount=maxcount, quiet=True)
    return directory


def write_tiny_data(root: Path, task: str = "va", *, window: int = 16, stride: int = 10, seed: int = 0,
                    maxcount: int = 4) -> WindowData:
    """Train, selection (held-out training videos) and validation window shards of a few short videos (one
    shorter than a window)."""
    dirs = {}
    for split, lengths, offset in TINY_SPLITS:
        records = make_records(task, lengths, seed + offset, prefix=f"{split[:3]}_v")
        dirs[split] = write_split(root / split, task, split, records, window=window, stride=stride,
                                  maxcount=maxcount)
    return WindowData(dirs["train"], dirs["validation"], FEATURE_DIM, {"fixture": "tiny"},
                      {"train": ["tra_v0"], "validation": ["val_v0"]}, selection_dir=dirs["selection"])


def tiny_config(task: str = "va", **train: Any) -> Config:
    """A config small enough to train in well under a second per epoch."""
    return resolve({
        "name": f"tiny_{task}",
        "task": task,
        "backbone": None,
        "data": {"dataset": "affwild2", "window": 16, "stride": 10},
        "model": {
            "temporal": [
                {"name": "tcn", "options": {"channels": [8], "kernel_size": 3, "dropout": 0.2}},
                {"name": "transformer", "options": {"d_model": 8, "heads": 2, "layers": 1, "ff_dim": 16,
                                                    "dropout": 0.2}},
            ],
            "head": {"hidden": 8, "dropout": 0.2},
        },
        "train": {"epochs": 3, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 1, "threads": 1, **train},
        "eval": {"batch_size": 4},
    }, path="tiny.yaml")


def _kill_after_step():
    """A step callback that SIGKILLs this process after the step $AFFBENCH_KILL_AFTER_STEP names (None when unset)."""
    import os
    import signal

    kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "0") or 0)
    if not kill_after:
        return None

    def kill(step: int) -> None:
        if step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill


def main(argv: list[str] | None = None) -> None:
    """Train the tiny config on the tiny data under DATA_DIR (run as a script, also under torchrun)."""
    import argparse
    import json

    from affbench.stages.trainer import train

    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--task", default="va")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", default="{}", help="JSON train overrides")
    parser.add_argument("--result-dir", type=Path, default=None,
                        help="write each process's result to result.rank<R>.json here (processes sharing one "
                             "stdout pipe can interleave their lines)")
    args = parser.parse_args(argv)
    data = WindowData(args.data_dir / "train", args.data_dir / "validation", FEATURE_DIM,
                      selection_dir=args.data_dir / "selection")
    result = train(tiny_config(args.task, **json.loads(args.set)), fold=0, out_dir=args.out_dir,
                   resume=args.resume, quiet=True, data=data, after_step=_kill_after_step())
    text = json.dumps(result, default=str)
    if args.result_dir is not None:
        import os

        args.result_dir.mkdir(parents=True, exist_ok=True)
        (args.result_dir / f"result.rank{os.environ.get('RANK', '0')}.json").write_text(text)
    print("RESULT " + text)


if __name__ == "__main__":
    main()
