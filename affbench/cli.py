"""The `affbench` command: a thin layer over the Python API.

Each subcommand group lives next to the code it drives; this module only assembles them. A module listed in
CLI_MODULES defines ``add_commands(subparsers)`` and sets ``func(args) -> int`` on its parsers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

CLI_MODULES = [
    "affbench.cli_components",
    "affbench.data.cli",
    "affbench.data.shard_cli",
    "affbench.train.cli",
    "affbench.train.stage_cli",
    "affbench.suite_cli",
    "affbench.cache_cli",
    "affbench.bench_cli",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand module's commands."""
    from affbench import __version__
    from affbench.cli_support import add_quiet_argument

    parser = argparse.ArgumentParser(
        prog="affbench",
        description="Benchmarks for continuous emotion recognition on video (ABAW / Aff-Wild2).",
    )
    parser.add_argument("--version", action="version", version=f"affbench {__version__}")
    add_quiet_argument(parser, top_level=True)
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of input errors too (they print one line by default)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in CLI_MODULES:
        importlib.import_module(module).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `affbench` console script."""
    # Before torch loads: OpenMP threads that spin while waiting steal the very cores they wait for on a shared
    # machine (2 threads ran a backbone 10x slower than 1 with one core busy elsewhere); passive waiting does
    # not. A value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from affbench.cli_support import run_reporting_input_errors

    # One reporter for every subcommand: input errors print one line and exit 2 (tracebacks are for bugs).
    prog = " ".join(["affbench", args.command, *([sub] if (sub := _subcommand(args)) else [])])
    return run_reporting_input_errors(prog, args.func, args)


def _subcommand(args: argparse.Namespace) -> str | None:
    """The subcommand of a command group (`data frames`, `shard windows`), if any."""
    return next((v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)), None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
