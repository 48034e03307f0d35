"""What every `affbench` subcommand shares: input errors reported as one line, usage for a bare group."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

from affbench._registry import PluginError

Command = Callable[[argparse.Namespace], int]

# Bad input (files, options, names) rather than bugs: shown as one line naming what is wrong, exit status 2.
INPUT_ERRORS = (PluginError, ValueError, OSError, ImportError)


def print_usage(parser: argparse.ArgumentParser) -> int:
    """Help of a command group called without a subcommand; exit status 2."""
    parser.print_help(sys.stderr)
    return 2


def reporting_input_errors(prog: str, func: Command) -> Command:
    """Run `func`; input errors become `<prog>: error: <message>` on stderr and exit code 2, not a traceback."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except BrokenPipeError:  # e.g. `| head`: stop quietly, and keep Python from complaining at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except INPUT_ERRORS as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2

    return run
