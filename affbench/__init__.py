"""affbench: reproducible benchmarks for continuous emotion recognition on video.

Public API::

    import affbench
    affbench.list_components("backbone")          # what is registered, and by which plugin
    affbench.create("temporal", "tcn", in_dim=768) # build one component from its options
    affbench.create_model(config)                  # backbone -> temporal stack -> task head
    affbench.metrics.ccc(pred, target)             # ABAW metrics

``import affbench`` is cheap: plugins load on first use, torch-heavy modules on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affbench.core.registry import (
    Component,
    ComponentOptionError,
    DuplicateComponentError,
    PluginError,
    UnknownComponentError,
    get_registry,
)
from affbench.hookspecs import hookimpl

__version__ = "0.1.0"

KINDS = ("backbone", "temporal", "task", "metric", "dataset")

if TYPE_CHECKING:  # pragma: no cover
    from affbench import metrics  # noqa: F401
    from affbench.model import create_model  # noqa: F401


def list_components(kind: str, pattern: str = "*") -> list[Component]:
    """Registered components of one kind whose names match an fnmatch `pattern`, sorted by name."""
    return get_registry().list(kind, pattern)


def create(kind: str, name: str, /, **options: Any) -> Any:
    """Build the component `name` of `kind` with `options` (a bad name or option raises a teaching error)."""
    return get_registry().create(kind, name, **options)


def __getattr__(name: str) -> Any:
    # Lazy: `affbench list` and plugin discovery must not pay for importing torch or scikit-learn.
    if name == "create_model":
        from affbench.model import create_model

        return create_model
    if name == "metrics":
        import importlib

        return importlib.import_module("affbench.metrics")
    raise AttributeError(f"module 'affbench' has no attribute '{name}'")


__all__ = [
    "KINDS",
    "Component",
    "ComponentOptionError",
    "DuplicateComponentError",
    "PluginError",
    "UnknownComponentError",
    "__version__",
    "create",
    "create_model",
    "hookimpl",
    "list_components",
    "metrics",
]
