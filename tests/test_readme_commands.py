"""The README's "Two commands" are what CI runs: .ci/run executes exactly those lines, in that order."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _commands(block: str) -> list[str]:
    """The command of each line of a shell block, its trailing comment removed."""
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def _bash_blocks(section: str) -> list[list[str]]:
    return [_commands(b) for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_ci_runs_the_readme_install_and_test_lines_verbatim():
    blocks = _bash_blocks(_section((ROOT / "README.md").read_text(encoding="utf-8"), "Two commands"))
    install, main_job = blocks[0]
    (test,) = blocks[1]
    (detector,) = blocks[2]
    assert install.startswith("pip install -e ") and main_job == "affbench suite paper" and test == "pytest"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    ran = [line for line in ci if line.startswith(("pip ", "pytest", "tox", "python -m pytest"))]
    assert ran == [install, detector, test]

