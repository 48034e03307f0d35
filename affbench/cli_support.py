"""What every `affbench` subcommand shares: input errors reported as one line, usage for a bare group.

The error contract: a user's input error (a bad file, option, name, folder or checkpoint) prints one line
``<prog>: error: <message>`` naming what is at fault and exits 2; anything else is a bug and keeps its
traceback. ``affbench --debug`` shows the traceback of input errors too.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import zipfile
from collections.abc import Callable

from affbench.core.registry import PluginError

Command = Callable[[argparse.Namespace], int]

# Bad input (files, options, names, corrupt inputs) rather than bugs: one line naming what is wrong, exit 2.
# ConfigError, SuiteError, CorruptShardError, AffWild2FormatError ... are ValueErrors; a truncated .npz is a
# BadZipFile; a checkpoint that cannot be loaded is a CheckpointError (see input_errors()).
INPUT_ERRORS = (PluginError, ValueError, OSError, ImportError, zipfile.BadZipFile)
INPUT_ERROR_EXIT = 2


def print_usage(parser: argparse.ArgumentParser) -> int:
    """Help of a command group called without a subcommand; exit status 2."""
    parser.print_help(sys.stderr)
    return 2


def one_line(exc: BaseException) -> str:
    """The message of an input error on one line (multi-line messages are joined with '; ')."""
    text = str(exc).strip() or type(exc).__name__
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def input_errors() -> tuple[type[BaseException], ...]:
    """INPUT_ERRORS plus CheckpointError once its module is loaded (importing it here would load torch for
    every command, `affbench list` included; a CheckpointError cannot exist before its module is imported)."""
    checkpoints = sys.modules.get("affbench.stages.checkpoints")
    return INPUT_ERRORS + ((checkpoints.CheckpointError,) if checkpoints is not None else ())


def run_reporting_input_errors(prog: str, func: Command, args: argparse.Namespace) -> int:
    """Run `func(args)`; an input error becomes `<prog>: error: <message>` on stderr and exit code 2."""
    try:
        return int(func(args) or 0)
    except BrokenPipeError:  # e.g. `| head`: stop quietly, and keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except BaseException as exc:
        if not isinstance(exc, input_errors()) or getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return INPUT_ERROR_EXIT


def reporting_input_errors(prog: str, func: Command) -> Command:
    """`func` wrapped by :func:`run_reporting_input_errors` (for parsers used without the `affbench` entry)."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        return run_reporting_input_errors(prog, func, args)

    return run


def add_quiet_argument(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--quiet`` (no progress bars). The top-level parser declares it with a default; every command that shows
    progress declares it again without one (SUPPRESS), so ``affbench train X --quiet`` works and a command that
    was not given it keeps what ``affbench --quiet train X`` set."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars",
                        **({} if top_level else {"default": argparse.SUPPRESS}))
