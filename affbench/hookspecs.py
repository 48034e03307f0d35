"""Hook specifications: one hook per component kind, each handed a ``register(name, factory)`` callback.

A plugin is a module (or object) holding functions decorated with :data:`affbench.hookimpl` whose names match
these hooks. Registering through a callback, instead of import-time decorators, keeps ``import affbench`` cheap
and lets the registry know exactly which plugin provided which name.
"""

from __future__ import annotations

import pluggy

PROJECT = "affbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def affbench_register_backbones(register):
    """Register image backbones.

    ``register(name, factory)``: ``factory(**options)`` returns an ``nn.Module`` with ``out_dim: int``,
    ``preprocess`` (an :class:`affbench.model.Preprocess`: input size, mean, std, resize mode), ``weights_id``
    (a stable identity of the loaded weights) and ``forward(images[B,3,H,W]) -> [B,out_dim]``.
    """


@hookspec
def affbench_register_temporal(register):
    """Register temporal blocks.

    ``register(name, factory)``: ``factory(in_dim, **options)`` returns an ``nn.Module`` with ``out_dim`` and
    ``forward(x[B,T,D], mask[B,T] bool | None) -> [B,T,out_dim]``; padded steps (mask False) must not change the
    outputs at valid steps.
    """


@hookspec
def affbench_register_tasks(register):
    """Register tasks.

    ``register(name, factory)``: ``factory(**options)`` returns a task module with ``label_names``, ``out_dim``,
    ``label_dim``, ``loss(pred, target, valid)``, ``metrics(values, target)``, ``primary_metric``,
    ``postprocess(pred)`` (submission values) and ``probabilities(pred)``; the optional attributes of
    :mod:`affbench.task_contract` (post-processing, submission format, report columns, references, plots).
    """


@hookspec
def affbench_register_metrics(register):
    """Register metrics. ``register(name, factory)``: ``factory()`` returns ``fn(pred, target) -> float | dict``."""


@hookspec
def affbench_register_datasets(register):
    """Register datasets.

    ``register(name, factory)``: ``factory(**options)`` returns an object with ``name``, ``image_root``,
    ``videos(annotation_set, split) -> list[VideoRecord]`` and ``provenance() -> dict``, and optionally
    ``tasks() -> list[str]``: the annotation sets it has. A task reads one of them (by default the set named like
    the task), so a dataset with a set of its own brings its own task.
    """


@hookspec
def affbench_register_commands(register):
    """Register command-line subcommands.

    ``register(path, setup, help)``: ``path`` is a new top-level command (``"mytool"``) or a subcommand of a
    command group (``"data synth"``); ``setup(parser)`` adds its arguments and sets ``func(args) -> int`` with
    ``parser.set_defaults``. Input errors it raises (ValueError, FileNotFoundError, ...) print one line and exit 2,
    as the built-in commands' do. Keep the plugin module light: it is imported to build the parser.
    """
