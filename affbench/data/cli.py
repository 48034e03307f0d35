"""`affbench data`: per-frame table, fold manifests, SynthAffect, submission checks, your own videos.

    affbench data frames --root DIR --task va --split train > va_train.csv
    affbench data folds  --root DIR --task va --k 5 --seed 0 --out folds.json
    affbench data synth  --out DIR --size small --seed 0          (the SynthAffect plugin's command)
    affbench data validate-submission VA_submission.txt --task va --order sample.txt
    affbench data crop   VIDEO_OR_FOLDER --out DIR          (affbench/video/cli.py)
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from affbench.cli_support import add_quiet_argument, print_usage, reporting_input_errors
from affbench.data import SPLITS, TASKS


def add_commands(subparsers) -> None:
    """Add the `data` command group (frames, folds, ...) to the top-level parser's subparsers; plugins add more
    (SynthAffect's `data synth`)."""
    data = subparsers.add_parser("data", help="read datasets: per-frame table, fold manifests, SynthAffect, "
                                              "submission check",
                                 description="Read datasets: per-frame table, fold manifests, SynthAffect; check "
                                             "ABAW submission files.")
    data.set_defaults(func=lambda args: print_usage(data))
    commands = data.add_subparsers(dest="data_command", metavar="{frames,folds,validate-submission,crop}")

    frames = commands.add_parser(
        "frames", help="print the per-frame table as CSV",
        description="Print one CSV row per annotation line: video,frame,image,valid,<labels>. `image` is the face "
                    "image's path relative to the dataset root (empty where no face was found); `valid` is 1 when "
                    "the label is usable.")
    add_dataset_arguments(frames)
    frames.add_argument("--task", required=True, choices=TASKS)
    frames.add_argument("--split", required=True, choices=SPLITS)
    frames.add_argument("--seed", dest="dataset_seed", type=int, default=None,
                        help="short for --dataset-seed (frames has no seed of its own)")
    frames.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    frames.set_defaults(func=reporting_input_errors("affbench data frames", run_frames))

    folds = commands.add_parser(
        "folds", help="write K-fold splits grouped by source video as a manifest",
        description="K-fold cross-validation over train+validation, grouped by source video (_left and _right "
                    "of one video stay together), balanced by frame count, stable for a seed.")
    add_dataset_arguments(folds)
    folds.add_argument("--task", required=True, choices=TASKS)
    folds.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    folds.add_argument("--seed", type=int, default=0, help="fold seed (default 0)")
    folds.add_argument("--out", type=Path, default=None, help="manifest file to write (default: print to stdout)")
    folds.set_defaults(func=reporting_input_errors("affbench data folds", run_folds))

    check = commands.add_parser(
        "validate-submission", help="check an ABAW submission file against the organisers' order file",
        description="Check an ABAW submission file: the exact header, one row per frame of the order file in its "
                    "order, and the values (VA two numbers in [-1, 1], EXPR one integer 0..7, AU twelve 0/1). The "
                    "first problem is printed as FILE:LINE (exit status 2).")
    check.add_argument("file", type=Path, help="the submission file")
    check.add_argument("--task", required=True, choices=TASKS)
    check.add_argument("--order", type=Path, required=True,
                       help="the organisers' file whose image_location column lists the frames, in order")
    check.set_defaults(func=reporting_input_errors("affbench data validate-submission", run_validate_submission))

    from affbench.video.cli import add_crop_command

    add_crop_command(commands)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument("--dataset", default="affwild2", metavar="NAME",
                       help="registered dataset name (default affwild2; see `affbench list dataset`)")
    group.add_argument("--root", type=Path, default=None,
                       help="folder holding the annotations (challenge folders up to two levels down) and "
                            "cropped_aligned/")
    group.add_argument("--annotations", type=Path, default=None, help="annotation folder (instead of --root)")
    group.add_argument("--images", type=Path, default=None, help="cropped_aligned/ folder (instead of --root)")
    group.add_argument("--size", default=None, help="dataset size option (synthaffect: tiny|small|medium|large)")
    group.add_argument("--dataset-seed", dest="dataset_seed", type=int, default=None,
                       help="dataset seed option (synthaffect)")
    group.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="any other dataset option (value read as YAML); repeatable")


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset options given on the command line (only those given)."""
    options: dict[str, Any] = {}
    for key in ("root", "annotations", "images", "size"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = str(value)
    if getattr(args, "dataset_seed", None) is not None:
        options["seed"] = args.dataset_seed
    for item in getattr(args, "option", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option '{item}': expected KEY=VALUE")
        import yaml

        options[key.strip()] = yaml.safe_load(value)
    return options


def open_dataset(args: argparse.Namespace) -> Any:
    """Create the dataset named by --dataset from the command-line options (quiet passed when it takes one)."""
    import affbench

    options = dataset_options(args)
    if args.dataset == "affwild2" and "root" not in options and "annotations" not in options:
        raise ValueError("give --root DIR (annotations and cropped_aligned/) or --annotations DIR with --images DIR")
    component = affbench.get_registry().get("dataset", args.dataset)
    try:
        accepts_quiet = "quiet" in inspect.signature(component.factory).parameters
    except (TypeError, ValueError):
        accepts_quiet = False
    if accepts_quiet and "quiet" not in options:
        options["quiet"] = bool(getattr(args, "quiet", False))
    return affbench.create("dataset", args.dataset, **options)


def annotated_videos(dataset: Any, task: str, split: str) -> Iterable[tuple[Any, list[tuple[str, ...]] | None]]:
    """(record, value texts) per video: the texts as written when the dataset keeps them, else None."""
    if hasattr(dataset, "annotated_videos"):
        return dataset.annotated_videos(task, split)
    return ((record, None) for record in dataset.videos(task, split))


def run_frames(args: argparse.Namespace) -> int:
    """`affbench data frames`."""
    from affbench.data.frames_csv import image_prefix, write_frames_csv

    dataset = open_dataset(args)
    base = getattr(dataset, "root", None)
    prefix = image_prefix(dataset.image_root, base if base is not None else dataset.image_root)
    videos = annotated_videos(dataset, args.task, args.split)
    if args.out is None:
        write_frames_csv(sys.stdout, videos, args.task, prefix=prefix)
        sys.stdout.flush()
        return 0
    from affbench.output import open_atomic

    with open_atomic(args.out) as out:  # a failure leaves neither half a table nor a temporary file
        n = write_frames_csv(out, videos, args.task, prefix=prefix)
    if not getattr(args, "quiet", False):
        print(f"wrote {n} frames to {args.out}", file=sys.stderr)
    return 0


def run_folds(args: argparse.Namespace) -> int:
    """`affbench data folds`."""
    from affbench.data.folds import fold_frame_counts, fold_manifest_text, task_folds, write_fold_manifest

    dataset = open_dataset(args)
    records = [r for split in SPLITS for r in dataset.videos(args.task, split)]
    folds, tasks = task_folds(dataset, args.task, k=args.k, seed=args.seed)
    provenance = _provenance(dataset, args.task)
    meta = {
        "dataset": args.dataset,
        "task": args.task,
        "k": args.k,
        "seed": args.seed,
        "grouped_by": "source video (_left/_right tracks together)",
        "split_over_tasks": tasks,
        "over_splits": list(SPLITS),
        "validation_frames": fold_frame_counts(records, folds),
        "provenance": provenance,
    }
    if args.out is None:
        sys.stdout.write(fold_manifest_text(folds, meta))
        sys.stdout.flush()
        return 0
    write_fold_manifest(args.out, folds, meta)
    if not getattr(args, "quiet", False):
        sizes = ", ".join(str(n) for n in meta["validation_frames"])
        print(f"wrote {args.k} folds ({len(records)} videos; validation frames per fold: {sizes}) to {args.out}",
              file=sys.stderr)
    return 0


def _provenance(dataset: Any, task: str) -> dict[str, Any]:
    try:
        return dataset.provenance(task)
    except TypeError:  # a dataset whose provenance() takes no task
        return dataset.provenance()


def run_validate_submission(args: argparse.Namespace) -> int:
    """`affbench data validate-submission`."""
    from affbench.data.submission import read_order_file, validate_submission

    rows = validate_submission(args.file, args.task, read_order_file(args.order))
    print(f"{args.file}: a valid {args.task.upper()} submission, {rows} rows in the order of {args.order}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `["data", <command>, ...]` without the full `affbench` command (which includes the same group)."""
    parser = argparse.ArgumentParser(prog="affbench data", description="affbench data commands")
    add_quiet_argument(parser, top_level=True)
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
