"""Group ``startup``: how long the `affbench` command takes to answer ``--help`` and ``list``, in a new process.

A user's first contact is ``affbench --help``: it must answer at once (goal: under 0.5 s on the project's 2-core
CPU machine), so building the parser must not import torch, numpy or the plugins' models. Each round starts a
fresh interpreter, as typing the command does. ``baseline_python_startup`` (``python -c pass``), measured in the
same run, is the floor: the interpreter and its site packages.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchkit import measure

GOAL_HELP_SECONDS = 0.5
COMMANDS = {"help": ["-m", "affbench", "--help"], "list": ["-m", "affbench", "list"]}


def _run(argv: list[str]) -> None:
    subprocess.run([sys.executable, *argv], check=True, capture_output=True)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_cli_startup(benchmark, device, sizes, command):
    """`affbench --help` / `affbench list` in a new interpreter: seconds per call."""
    benchmark.group = "startup"
    rate = measure(benchmark, lambda: _run(COMMANDS[command]), items=1, unit="commands/s", device=device,
                   batch_size=None, shapes={}, sizes=sizes, min_rounds=5, command=" ".join(COMMANDS[command]),
                   goal_seconds=GOAL_HELP_SECONDS if command == "help" else None)
    if command == "help":
        benchmark.extra_info["goal_met"] = 1 / rate < GOAL_HELP_SECONDS


def test_baseline_python_startup(benchmark, device, sizes):
    """`python -c pass`: the interpreter's own start-up in this environment."""
    benchmark.group = "startup"
    measure(benchmark, lambda: _run(["-c", "pass"]), items=1, unit="commands/s", device=device, batch_size=None,
            shapes={}, sizes=sizes, min_rounds=5)
