"""The plugin manager: loads built-in and third-party plugins once, on first use, and owns the component tables.

Built-in plugins are declared in the same ``affbench`` entry-point group a third party uses. Each plugin is
loaded and asked to register in isolation: a plugin that fails to import or raises while registering is
reported as a warning naming its entry point, its partial registrations are rolled back, and the others load.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from affbench import hookspecs

ENTRY_POINT_GROUP = "affbench"
DISABLE_AUTOLOAD_ENV = "AFFBENCH_DISABLE_PLUGIN_AUTOLOAD"
DISTRIBUTION = "affbench"

# kind -> hook name. The order is the order `affbench list` prints.
KIND_HOOKS: dict[str, str] = {
    "backbone": "affbench_register_backbones",
    "temporal": "affbench_register_temporal",
    "task": "affbench_register_tasks",
    "metric": "affbench_register_metrics",
    "dataset": "affbench_register_datasets",
}

# The built-in plugins, used when affbench runs from a source tree without installed metadata. They must
# equal the `affbench` entry points in pyproject.toml (a test checks it).
DEFAULT_PLUGINS: dict[str, str] = {
    "clip": "affbench_plugins.clip_backbone",
    "timm": "affbench_plugins.timm_backbone",
    "temporal": "affbench_plugins.temporal",
    "tasks": "affbench_plugins.tasks",
    "metrics": "affbench_plugins.metrics",
    "affwild2": "affbench_plugins.datasets.affwild2",
    "synthaffect": "affbench_plugins.datasets.synthaffect",
}


class PluginError(Exception):
    """Base class for registry errors."""


class UnknownComponentError(PluginError, KeyError):
    """A component name or kind that nothing registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateComponentError(PluginError):
    """Two plugins registered the same name for one kind."""


class ComponentOptionError(PluginError, TypeError):
    """An option a component's factory does not accept, or a missing required one."""


@dataclass(frozen=True)
class Component:
    """One registered component: what it is, how to build it, and who provides it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    version: str

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) plugin, as `affbench plugins` reports it."""

    name: str
    module: str
    version: str
    builtin: bool
    hooks: tuple[str, ...]
    error: str | None = None


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) if dist is not None else None


def _dist_version(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None) or "unknown"


def closest_match(name: str, choices: list[str]) -> str | None:
    """The registered name that `name` most likely meant, if any is close."""
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return matches[0] if matches else None


class Registry:
    """Component tables filled by plugins; loads lazily and only once."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded = False
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KIND_HOOKS}
        self._plugins: list[PluginInfo] = []
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    # -- loading ----------------------------------------------------------------------------------------------
    def _plugin_sources(self) -> list[tuple[str, str, str, bool, Callable[[], Any]]]:
        """(name, module path, version, builtin, loader) for every plugin to load, built-ins first."""
        from affbench import __version__

        eps = _entry_points()
        builtin_eps = [ep for ep in eps if _dist_name(ep) == DISTRIBUTION]
        sources: list[tuple[str, str, str, bool, Callable[[], Any]]] = []
        if builtin_eps:
            for ep in builtin_eps:
                sources.append((ep.name, ep.value, _dist_version(ep), True, ep.load))
        else:  # a source checkout without installed metadata
            for name, module in DEFAULT_PLUGINS.items():
                sources.append((name, module, __version__, True, lambda m=module: importlib.import_module(m)))
        if os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() not in ("", "0"):
            return sources
        for ep in eps:
            if _dist_name(ep) == DISTRIBUTION:
                continue
            sources.append((ep.name, ep.value, _dist_version(ep), False, ep.load))
        return sources

    def load(self) -> None:
        """Load every plugin once; later calls are free."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            for name, module, version, builtin, loader in self._plugin_sources():
                self._load_one(name, module, version, builtin, loader)
            self._loaded = True

    def register_plugin(self, plugin: Any, name: str, *, version: str = "unknown", builtin: bool = False) -> None:
        """Register an already-imported plugin object (a module or instance with hookimpls)."""
        self.load()
        with self._lock:
            self._load_one(name, getattr(plugin, "__name__", type(plugin).__name__), version, builtin,
                           lambda: plugin)

    def _load_one(self, name: str, module: str, version: str, builtin: bool, loader: Callable[[], Any]) -> None:
        where = f"plugin '{name}' ({module})"
        try:
            plugin = loader()
        except (Exception, SystemExit) as exc:  # a broken plugin (even one calling sys.exit) must not break the tool
            self._fail(name, module, version, builtin, f"failed to import: {type(exc).__name__}: {exc}", where)
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, module, version, builtin, f"rejected by the plugin manager: {exc}", where)
            return
        added: list[tuple[str, str]] = []
        hooks: list[str] = []
        try:
            for kind, hook_name in KIND_HOOKS.items():
                impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
                for impl in impls:
                    hooks.append(hook_name)
                    impl.function(register=self._registrar(kind, name, version, added))
        except (Exception, SystemExit) as exc:
            for kind, comp_name in added:
                del self._components[kind][comp_name]
            self.pm.unregister(plugin)
            self._fail(name, module, version, builtin, f"failed while registering: {type(exc).__name__}: {exc}",
                       where)
            return
        self._plugins.append(PluginInfo(name, module, version, builtin, tuple(hooks)))

    def _fail(self, name: str, module: str, version: str, builtin: bool, error: str, where: str) -> None:
        self._plugins.append(PluginInfo(name, module, version, builtin, (), error))
        warnings.warn(f"affbench: skipped {where}: {error}", RuntimeWarning, stacklevel=3)

    def _registrar(self, kind: str, plugin: str, version: str, added: list[tuple[str, str]]):
        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{kind} names must be non-empty strings, got {name!r}")
            if not callable(factory):
                raise PluginError(f"{kind} '{name}': factory must be callable, got {type(factory).__name__}")
            existing = self._components[kind].get(name)
            if existing is not None:
                raise DuplicateComponentError(
                    f"{kind} '{name}' is registered twice: by plugin '{existing.plugin}' and by plugin '{plugin}'"
                )
            self._components[kind][name] = Component(kind, name, factory, plugin, version)
            added.append((kind, name))

        return register

    # -- queries ----------------------------------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        self.load()
        return list(self._plugins)

    def list(self, kind: str | None = None, pattern: str = "*") -> list[Component]:
        self.load()
        kinds = [self._check_kind(kind)] if kind is not None else list(KIND_HOOKS)
        out: list[Component] = []
        for k in kinds:
            out.extend(c for n, c in sorted(self._components[k].items()) if fnmatch.fnmatchcase(n, pattern))
        return out

    def get(self, kind: str, name: str) -> Component:
        self.load()
        table = self._components[self._check_kind(kind)]
        if name in table:
            return table[name]
        names = sorted(table)
        hint = closest_match(name, names)
        msg = f"unknown {kind} '{name}'; registered {kind}s: {', '.join(names) or '(none)'}"
        if hint:
            msg += f". Did you mean '{hint}'?"
        raise UnknownComponentError(msg)

    def create(self, kind: str, name: str, /, **options: Any) -> Any:
        component = self.get(kind, name)
        check_options(component, options)
        try:
            return component.factory(**options)
        except Exception as exc:
            name_culprit(exc, f"{kind} '{name}' (plugin '{component.plugin}')")
            raise

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind in KIND_HOOKS:
            return kind
        hint = closest_match(kind, list(KIND_HOOKS))
        msg = f"unknown component kind '{kind}'; kinds: {', '.join(KIND_HOOKS)}"
        raise UnknownComponentError(msg + (f". Did you mean '{hint}'?" if hint else ""))


def name_culprit(exc: BaseException, label: str) -> None:
    """Prefix an exception's message with `label` (the component and its plugin), keeping its type.

    The type is kept so callers catching e.g. FileNotFoundError still do; only the message gains who raised.
    """
    args = exc.args
    if len(args) == 1 and isinstance(args[0], str) and not args[0].startswith(label):
        exc.args = (f"{label}: {args[0]}",)
    elif isinstance(exc, OSError) and isinstance(exc.strerror, str):
        exc.strerror = f"{label}: {exc.strerror}"  # what str() of an OSError with an errno shows
    else:
        exc.add_note(f"raised by {label}")


def unknown_option(component: Component, options: Iterable[str], *, set_by_caller: Iterable[str] = ()
                   ) -> str | None:
    """The first of `options` the component's factory cannot take, as the end of a message (``has no option 'x';
    accepted options: ...``, with a "did you mean"); None when it takes them all, or any (``**options``, or a
    factory without a signature, which is left to speak for itself). `set_by_caller` are parameters the
    caller fills in (a temporal block's ``in_dim``), never accepted from a user."""
    try:
        params = inspect.signature(component.factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    hidden = set(set_by_caller)
    accepted = [n for n, p in params.items() if n != "self" and n not in hidden and p.kind in
                (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for option in options:
        if option not in accepted:
            hint = closest_match(option, accepted)
            return (f"has no option '{option}'; accepted options: {', '.join(accepted) or '(none)'}"
                    + (f". Did you mean '{hint}'?" if hint else ""))
    return None


def check_options(component: Component, options: dict[str, Any]) -> None:
    """Raise ComponentOptionError naming the component and the option when the factory cannot take `options`."""
    label = f"{component.kind} '{component.name}' (plugin '{component.plugin}')"
    problem = unknown_option(component, options)
    if problem is not None:
        raise ComponentOptionError(f"{label} {problem}")
    try:
        params = inspect.signature(component.factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call speak for itself
        return
    accepted = [n for n, p in params.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) and n != "self"]
    missing = [
        n for n in accepted
        if params[n].default is inspect.Parameter.empty and n not in options
    ]
    if missing:
        raise ComponentOptionError(f"{label} needs option(s): {', '.join(missing)}")


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry (created on first use)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Registry()
        return _registry


def reset_registry() -> None:
    """Forget every loaded plugin; the next query loads them again (for tests and long-lived sessions)."""
    global _registry
    with _registry_lock:
        _registry = None
