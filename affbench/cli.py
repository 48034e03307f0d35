"""The `affbench` command: a thin layer over the Python API.

Each subcommand group lives next to the code it drives; this module only assembles them. A module listed in
CLI_MODULES defines ``add_commands(subparsers)`` and sets ``func(args) -> int`` on its parsers. Plugins add
commands through the ``affbench_register_commands`` hook; plugins are loaded for them only when the command
line names a command the core lacks, so ``affbench --help`` and the core commands never import a plugin (a
group's help lists the core subcommands; ``affbench list`` names what each plugin registers).
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
    "affbench.stages.cli",
    "affbench.stages.stage_cli",
    "affbench.suite_cli",
    "affbench.cache_cli",
    "affbench.bench_cli",
]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with every core command, and the plugins' commands unless `argv` (the command line
    it is built for) stays within the core ones."""
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
    if argv is None or _reaches_past_core(subparsers, argv):
        add_plugin_commands(subparsers)
    return parser


def _group_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _reaches_past_core(subparsers: argparse._SubParsersAction, argv: list[str]) -> bool:
    """Whether the command line names a command the core parser lacks (options and their values come after the
    command words)."""
    group = subparsers
    for word in (a for a in argv if not a.startswith("-")):
        if word not in group.choices:
            return True
        group = _group_of(group.choices[word])
        if group is None:
            return False
    return False


def add_plugin_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add every plugin's commands (``affbench_register_commands``) under the top-level `subparsers`."""
    import affbench
    from affbench.cli_support import reporting_input_errors

    def register(path: str, setup, help: str) -> None:
        *groups, name = str(path).split()
        target = subparsers
        for word in groups:
            target = _group_of(target.choices[word]) if word in target.choices else None
            if target is None:
                raise affbench.PluginError(f"command '{path}': '{word}' is not a command group")
        if name in target.choices:
            raise affbench.PluginError(f"command '{path}' exists already")
        parser = target.add_parser(name, help=help, description=help)
        setup(parser)
        func = parser.get_default("func")
        if func is None:
            raise affbench.PluginError(f"command '{path}': setup(parser) must set func with parser.set_defaults")
        parser.set_defaults(func=reporting_input_errors(f"affbench {path}", func))
        if target.metavar:  # a group that lists its subcommands shows the new one too
            target.metavar = "{" + ",".join(target.choices) + "}"

    registry = affbench.get_registry()
    registry.load()
    registry.pm.hook.affbench_register_commands(register=register)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `affbench` console script."""
    # Before torch loads: OpenMP threads that spin while waiting steal the very cores they wait for on a shared
    # machine (2 threads ran a backbone 10x slower than 1 with one core busy elsewhere); passive waiting does
    # not. A value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
