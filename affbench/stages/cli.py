"""`affbench train`, `affbench evaluate`, `affbench predict`: stage 3 and its outputs from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from affbench.cli_support import add_quiet_argument, reporting_input_errors


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=1e-3", "data.dataset.options.root=/data"]`` -> {"train.lr": 0.001, ...} (values read as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE (e.g. train.lr=1e-4)")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def _fold(value: str) -> int | None:
    if value in ("official", "none", "null"):
        return None
    try:
        fold = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fold expects an integer K or 'official', got {value!r}") from None
    if fold < 0:
        raise argparse.ArgumentTypeError(f"--fold must be >= 0, got {fold}")
    return fold


def _checkpoint(path: str) -> Path:
    """A checkpoint file, or a run directory (its best.pt)."""
    p = Path(path)
    return p / "best.pt" if p.is_dir() else p


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    metrics = result.get("metrics") or {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "_AU" not in k)
    where = result.get("run_dir") or result.get("checkpoint")
    rule = result.get("scoring") or {}
    counted = (f"frame scores on windows of {rule['window']} every {rule['stride']} (eval.scoring: windows)"
               if rule.get("rule") == "windows" else "frames")
    print(f"{where}: {shown} ({metrics.get('frames', '?')} {counted})")


def device_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--device`` as the config override it stands for (nothing when it is not given)."""
    return {"device": args.device} if getattr(args, "device", None) else {}


def cmd_train(args: argparse.Namespace) -> int:
    from affbench.core.config import find_config, load_config
    from affbench.stages.trainer import train

    config = load_config(find_config(args.config), {**parse_overrides(args.set), **device_overrides(args)})
    result = train(config, fold=args.fold, out_dir=args.out, resume=args.resume, quiet=args.quiet)
    from affbench.stages.distributed import init_distributed

    if init_distributed().is_main:
        _print(result, args.json)
    return 0


def _config_arg(args: argparse.Namespace):
    if not args.config:
        return None
    from affbench.core.config import find_config, load_config

    return load_config(find_config(args.config), {**parse_overrides(args.set), **device_overrides(args)})


def cmd_evaluate(args: argparse.Namespace) -> int:
    from affbench.stages.evaluate import evaluate

    result = evaluate(_checkpoint(args.checkpoint), config=_config_arg(args), fold=args.fold, split=args.split,
                      smoothing=args.smoothing, quiet=args.quiet, device=args.device)
    _print(result, args.json)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.video is not None:
        from affbench.video.cli import run_predict_video

        return run_predict_video(args)
    if args.checkpoint is None:
        print("affbench predict: error: give a CHECKPOINT (or RUN_DIR), or --video FILE --run RUN_DIR",
              file=sys.stderr)
        return 2
    from affbench.stages.evaluate import predict

    checkpoint = _checkpoint(args.checkpoint)
    out = args.out or checkpoint.parent
    result = predict(checkpoint, out, config=_config_arg(args), fold=args.fold, split=args.split,
                     smoothing=args.smoothing, order_file=args.order, quiet=args.quiet, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:  # a multi-task model's result lists each task's files
        for written in result.get("tasks", {"": result}).values():
            if "submission" in written:
                print(f"predictions: {written['predictions']}\nsubmission: {written['submission']} "
                      f"({written['rows']} rows{', ' + str(written['filled']) + ' filled from the nearest frame' if written['filled'] else ''})")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fold", type=_fold, default=None,
                   help="fold K of the K-fold split, or 'official' (default) for the official train/validation")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=1e-4 (repeatable; values read as YAML)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_quiet_argument(p)
    if not any("--device" in a.option_strings for a in p._actions):  # predict has it among --video's options
        from affbench.devices import add_device_argument

        add_device_argument(p)


def add_commands(subparsers) -> None:
    """Register train, evaluate and predict."""
    p = subparsers.add_parser("train", help="stage 3: temporal model on window shards (runs stages 1-2 if needed)",
                              description="Train the temporal stack and head of CONFIG (a YAML file or a built-in "
                                          "name such as synthaffect/va/ours); torchrun runs it data-parallel.")
    p.add_argument("config", help="config file, or built-in config name (e.g. paper/va/ours)")
    p.add_argument("--out", default="runs", help="runs root; the run directory is OUT/<task>/<name>/fold<K>")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last.pt")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    for name, helptext in (("evaluate", "metrics of a trained checkpoint on a split (every labelled frame once)"),
                           ("predict", "per-frame predictions CSV and ABAW submission file")):
        p = subparsers.add_parser(name, help=helptext, description=helptext)
        p.add_argument("checkpoint", nargs="?" if name == "predict" else None,
                       help="best.pt / last.pt, or a run directory (uses its best.pt)")
        p.add_argument("--config", help="config to use instead of the one stored in the checkpoint")
        p.add_argument("--split", default="validation",
                       choices=("train", "validation", "test") if name == "predict" else ("train", "validation"),
                       help="test: the unlabelled videos the --order file lists" if name == "predict" else None)
        p.add_argument("--smoothing", type=int, default=None,
                       help="temporal smoothing window in frames (default: the config's eval.smoothing)")
        if name == "predict":
            p.add_argument("--out", default=None, help="output directory (default: the checkpoint's directory)")
            p.add_argument("--order", default=None,
                           help="organisers' sample file: write submission rows in its image_location order "
                                "(required with --split test)")
            from affbench.video.cli import add_predict_video_arguments

            add_predict_video_arguments(p)
        _add_common(p)
        p.set_defaults(func=cmd_evaluate if name == "evaluate" else
                       reporting_input_errors("affbench predict", cmd_predict))
