"""Plugins add commands (``affbench_register_commands``); core imports no plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import affbench
from affbench import hookimpl
from affbench.cli import main as affbench_main
from affbench.core.registry import reset_registry

CORE = Path(affbench.__file__).parent


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_no_plugin(path):
    found = [(line, m) for line, m in _imported_modules(path) if m.split(".")[0] == "affbench_plugins"]
    assert not found, f"{path.relative_to(CORE.parent)}:{found[0][0]} imports {found[0][1]}; reach plugins " \
                      "through the registry"


def _count(args) -> int:
    print(f"{args.word} x{args.times}: " + " ".join([args.word] * args.times))
    if args.times < 1:
        raise ValueError(f"--times must be at least 1, got {args.times}")
    return 0


class EchoPlugin:
    @hookimpl
    def affbench_register_commands(self, register):
        def setup(parser):
            parser.add_argument("word")
            parser.add_argument("--times", type=int, default=2)
            parser.set_defaults(func=_count)

        register("echo", setup, "print a word several times")
        register("data echo", setup, "print a word several times, from the data group")


@pytest.fixture
def echo_plugin():
    reset_registry()
    affbench.get_registry().register_plugin(EchoPlugin(), "echo")
    yield
    reset_registry()


def test_a_plugin_adds_a_command_and_a_subcommand_of_a_group(echo_plugin, capsys):
    assert affbench_main(["echo", "hi", "--times", "3"]) == 0
    assert capsys.readouterr().out == "hi x3: hi hi hi\n"
    assert affbench_main(["data", "echo", "ho"]) == 0
    assert capsys.readouterr().out == "ho x2: ho ho\n"


def test_a_plugin_command_reports_input_errors_in_one_line(echo_plugin, capsys):
    assert affbench_main(["echo", "hi", "--times", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "affbench echo: --times must be at least 1, got 0" or "--times must be at least 1" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_the_synthaffect_plugin_brings_data_synth(capsys):
    with pytest.raises(SystemExit) as exit_:
        affbench_main(["data", "synth", "--help"])
    assert exit_.value.code == 0
    assert "--size {tiny,small,medium,large}" in capsys.readouterr().out
