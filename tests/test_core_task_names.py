"""Core holds no task names: everything task-specific lives in the task plugins (affbench.task_contract).

What counts as a task name in code: the built-in tasks' names (va, expr, au) as a quoted string ('va', "expr")
and as an attribute (``x.au``). Words in prose and keyword arguments such as matplotlib's ``va="center"`` do
not count. The one place allowed to name them is the Aff-Wild2 file format (affbench/data/affwild2_layout.py
and the ``TASKS`` tuple it re-exports from affbench/data/__init__.py): there they are the names of the
dataset's three annotation sets (folder names, file headers, value ranges), the data both built-in datasets
and the crop / submission tools share, not task behaviour.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import affbench

CORE = Path(affbench.__file__).parent
NAMES = ("va", "expr", "au")
TASK_NAME = re.compile(r"""(['"])(?:va|expr|au)\1|\.(?:va|expr|au)\b""")
ANNOTATION_FORMAT = {CORE / "data" / "affwild2_layout.py", CORE / "data" / "__init__.py"}


def task_name_uses(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every task-name use in Python source `text`."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if TASK_NAME.search(line)]


def test_the_pattern_finds_quoted_and_attribute_uses_and_ignores_prose_and_keywords():
    source = 'if name == "au":\n    x = {\'expr\': 1}\n    y = tasks.va\n# the VA task, va, expr\nax.text(va="center")\n'
    assert [i for i, _ in task_name_uses(source)] == [1, 2, 3]


@pytest.mark.parametrize("path", sorted(p for p in CORE.rglob("*.py") if p not in ANNOTATION_FORMAT),
                         ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_names_no_task(path):
    found = task_name_uses(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(CORE.parent)}:{found[0][0]}: names a task ({found[0][1]}); " \
                      "declare it on the task (affbench.task_contract) instead"


def test_the_annotation_format_is_the_only_exception_and_still_exists():
    for path in ANNOTATION_FORMAT:
        assert task_name_uses(path.read_text(encoding="utf-8")), path
