"""YAML reading that refuses a key given twice in one mapping.

PyYAML keeps the last of two equal keys silently, so ``lr: 1e-3`` followed later by ``lr: 1e-5`` trains with
the second value while the reader sees the first. Config and suite files are read with this loader instead.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping holds the same key twice; ``line`` is the 1-based line of the repeat."""

    def __init__(self, key: Any, line: int, first_line: int, mark: yaml.Mark) -> None:
        super().__init__(problem=f"duplicate key {key!r}", problem_mark=mark)
        self.key, self.line, self.first_line = key, line, first_line


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose mappings refuse a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                break
            if first is not None:
                raise DuplicateKeyError(key, key_node.start_mark.line + 1, first, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_unique(text: str, source: str) -> Any:
    """Parse YAML text like yaml.safe_load, but a repeated key raises ValueError naming `source`:line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise ValueError(f"{source}:{exc.line}: duplicate key {exc.key!r} (first given on line {exc.first_line}); "
                         "a key may appear once in a mapping: keep one") from None
