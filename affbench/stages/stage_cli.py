"""`affbench finetune CONFIG` and `affbench extract CONFIG`: the shared stages, run on their own.

Input errors are reported by the `affbench` entry point (one line, exit 2). Both are idempotent: a second call with the same inputs finds its result in the cache and returns at once.
"""

from __future__ import annotations

import argparse

from affbench.cli_support import add_quiet_argument


def _common(parser: argparse.ArgumentParser) -> None:
    from affbench.stages.cli import _fold

    parser.add_argument("config", help="config file, or built-in config name (e.g. synthaffect/va/ours)")
    parser.add_argument("--fold", type=_fold, default=None,
                        help="fold K of the K-fold split, or 'official' (default) for the official train/validation")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set finetune.epochs=2 (repeatable; values read as YAML)")
    add_quiet_argument(parser)
    from affbench.devices import add_device_argument

    add_device_argument(parser)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("finetune", help="stage 1: fine-tune the backbone on the fold's training frames")
    _common(p)
    p.set_defaults(func=_finetune)
    p = subparsers.add_parser("extract", help="stage 2: per-frame features into window shards (cached)")
    _common(p)
    p.set_defaults(func=_extract)


def _load(args: argparse.Namespace):
    from affbench.core.config import find_config, load_config
    from affbench.stages.cli import device_overrides, parse_overrides

    return load_config(find_config(args.config), {**parse_overrides(args.set), **device_overrides(args)})


def _finetune(args: argparse.Namespace) -> int:
    from affbench.stages.finetune import finetune

    config = _load(args)
    if config.get("backbone") is None:
        from affbench.core.config import ConfigError

        raise ConfigError(f"{config.where('backbone')}: backbone: is null; nothing to fine-tune")
    result = finetune(config, fold=args.fold, quiet=bool(getattr(args, "quiet", False)))
    if not _is_main():
        return 0
    state = "reused" if result.reused else "trained"
    print(f"{state}: {result.weights_path}")
    print(f"weights_id: {result.weights_id}")
    for row in result.manifest.get("history", []):
        print(f"  epoch {row['epoch']}: loss {row['loss']:.4f} on {row['frames']} frames")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from affbench.stages.pipeline import prepare_window_shards

    data = prepare_window_shards(_load(args), fold=args.fold, quiet=bool(getattr(args, "quiet", False)))
    if not _is_main():
        return 0
    prov = data.provenance
    print(f"features: {prov['features_dir']} (dim {data.feature_dim}, {prov['extracted_frames']} frames extracted "
          "now)")
    for split, directory in data.dirs.items():
        counts, faces = prov["counts"][split], prov["missing_faces"][split]
        print(f"{split}: {directory} ({counts['windows']} windows, {counts['videos']} videos, "
              f"{counts['frames']} frames; {faces['frames_without_face']} without a face, policy "
              f"'{faces['policy']}')")
    return 0


def _is_main() -> bool:
    """Whether this process prints: the only one, or rank 0 under torchrun."""
    from affbench.stages import distributed

    return distributed.rank() == 0
