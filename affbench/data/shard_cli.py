"""`affbench shard`: write frame shards from a dataset, or window shards from per-video feature files.

    affbench shard frames  --dataset affwild2 --root DIR --task va --split train --out shards/va_train_frames
    affbench shard windows --dataset affwild2 --root DIR --task va --split train --features FEATS \\
        --backbone clip --weights-id sha256:... --out shards/va_train_windows

``shard windows`` turns features computed elsewhere (one ``<video>.npy`` float array [n_frames, D] per video,
one row per annotation line) into window shards; the built-in pipeline writes window shards itself during
extraction, so this command is for bringing your own features. The backbone name and weights id are required
because they are the provenance that trainers check before using the shards.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affbench.cli_support import print_usage, reporting_input_errors
from affbench.data import SPLITS, TASKS

if TYPE_CHECKING:  # numpy loads when a command runs, not when the parser is built
    import numpy as np


def add_commands(subparsers) -> None:
    """Add the `shard` command group (frames, windows) to the top-level parser's subparsers."""
    from affbench.data import DEFAULT_MISSING_FACE_POLICY as DEFAULT_POLICY
    from affbench.data import FRAME_MAXCOUNT, WINDOW_MAXCOUNT
    from affbench.data import MISSING_FACE_POLICIES as POLICIES
    from affbench.data.cli import add_dataset_arguments

    shard = subparsers.add_parser(
        "shard", help="write webdataset shards (frames, windows)",
        description="Write webdataset shard sets with a manifest.json; a set is replaced atomically.")
    shard.set_defaults(func=lambda args: print_usage(shard))
    commands = shard.add_subparsers(dest="shard_command", metavar="{frames,windows}")

    frames = commands.add_parser(
        "frames", help="one sample per face image: JPEG bytes + labels",
        description="Write frame shards (jpg bytes as stored + json {video, frame, valid, labels}) for "
                    "fine-tuning and feature extraction.")
    add_dataset_arguments(frames)
    frames.add_argument("--task", required=True, choices=TASKS)
    frames.add_argument("--split", required=True, choices=SPLITS)
    frames.add_argument("--out", type=Path, required=True, help="shard set folder to (re)write")
    frames.add_argument("--maxcount", type=int, default=FRAME_MAXCOUNT, help=f"images per shard (default {FRAME_MAXCOUNT})")
    frames.set_defaults(func=reporting_input_errors("affbench shard frames", run_frames))

    windows = commands.add_parser(
        "windows", help="window shards from per-video feature files",
        description="Cut per-video features (<video>.npy, float [n_frames, D]) into windows and write window "
                    "shards with labels, validity, feature mask and frame ids.")
    add_dataset_arguments(windows)
    windows.add_argument("--task", required=True, choices=TASKS)
    windows.add_argument("--split", required=True, choices=SPLITS)
    windows.add_argument("--features", type=Path, required=True, help="folder of <video>.npy feature arrays")
    windows.add_argument("--backbone", required=True, help="name of the model that produced the features")
    windows.add_argument("--weights-id", required=True, help="hash or tag of that model's weights")
    windows.add_argument("--preprocess", default="{}", help="preprocessing used, as JSON (default {})")
    windows.add_argument("--window", type=int, default=300, help="frames per window (default 300)")
    windows.add_argument("--stride", type=int, default=200, help="frames between window starts (default 200)")
    windows.add_argument("--missing-faces", choices=POLICIES, default=DEFAULT_POLICY,
                         help=f"policy for frames without a face image (default {DEFAULT_POLICY})")
    windows.add_argument("--out", type=Path, required=True, help="shard set folder to (re)write")
    windows.add_argument("--maxcount", type=int, default=WINDOW_MAXCOUNT,
                         help=f"windows per shard (default {WINDOW_MAXCOUNT})")
    windows.set_defaults(func=reporting_input_errors("affbench shard windows", run_windows))


def _dataset_provenance(dataset: Any, task: str) -> dict[str, Any]:
    try:
        return dataset.provenance(task)
    except TypeError:  # a dataset whose provenance() takes no task
        return dataset.provenance()


def run_frames(args: argparse.Namespace) -> int:
    """`affbench shard frames`."""
    from affbench.data.cli import open_dataset
    from affbench.data.frame_shards import write_frame_shards

    dataset = open_dataset(args)
    records = dataset.videos(args.task, args.split)
    manifest = write_frame_shards(
        records,
        dataset.image_root,
        args.out,
        task=args.task,
        dataset_provenance={**_dataset_provenance(dataset, args.task), "split": args.split},
        maxcount=args.maxcount,
        quiet=bool(getattr(args, "quiet", False)),
        desc=f"frame shards {args.task} {args.split}",
    )
    if not getattr(args, "quiet", False):
        print(f"wrote {manifest['num_samples']} face images of {manifest['counts']['videos']} videos in "
              f"{len(manifest['shards'])} shard(s) to {args.out}", file=sys.stderr)
    return 0


def load_video_features(path: Path, n_frames: int) -> np.ndarray:
    """A video's features [n_frames, D] from a .npy file (never unpickled); raises naming the file."""
    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"no features for this video: {path} is missing")
    try:
        features = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric .npy array ({exc})") from None
    if features.ndim != 2 or features.shape[0] != n_frames or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(
            f"{path}: features must be a float array [{n_frames}, D] (one row per annotation line), "
            f"got {features.dtype} {features.shape}"
        )
    return np.asarray(features)


def run_windows(args: argparse.Namespace) -> int:
    """`affbench shard windows`."""
    from affbench.data.cli import open_dataset
    from affbench.data.missing_faces import apply_policy
    from affbench.data.window_shards import write_window_shards

    try:
        preprocess = json.loads(args.preprocess)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--preprocess: not valid JSON ({exc})") from None
    dataset = open_dataset(args)
    records = dataset.videos(args.task, args.split)

    def videos() -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        for record in records:
            raw = load_video_features(args.features / f"{record.video}.npy", record.n_frames)
            features, mask = apply_policy(raw, record.has_image, args.missing_faces)
            yield record, features, mask

    manifest = write_window_shards(
        args.out,
        videos(),
        window=args.window,
        stride=args.stride,
        manifest_extra={
            "dataset": _dataset_provenance(dataset, args.task),
            "split": args.split,
            "task": args.task,
            "backbone": {"name": args.backbone, "weights_id": args.weights_id, "preprocess": preprocess},
            "missing_faces": args.missing_faces,
            "features_from": str(args.features.resolve()),
        },
        maxcount=args.maxcount,
        quiet=bool(getattr(args, "quiet", False)),
        desc=f"window shards {args.task} {args.split}",
    )
    if not getattr(args, "quiet", False):
        print(f"wrote {manifest['counts']['windows']} windows of {manifest['counts']['videos']} videos in "
              f"{len(manifest['shards'])} shard(s) to {args.out}", file=sys.stderr)
    return 0
