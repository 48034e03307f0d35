"""Run configurations: YAML files with ``include:``, validated against one schema, with defaults filled in.

Merge rule (the only one): a file's ``include:`` (a path or a list of paths, relative to that file) is loaded
first, in the order listed (a later include wins over an earlier one), then the file's own values are merged on
top. Mappings merge key by key, recursively; lists and scalars replace the earlier value whole; ``null`` is a
value like any other (it replaces, it never deletes). One refinement for components: a component mapping
(``{name, options}``) that names a *different* component replaces the earlier one whole, since another
component's options would not apply to it. Overrides given to :func:`load_config` are merged last with
the same rule.

Every leaf remembers which file (and line) set it, so an error reads e.g.
``configs/paper/va/ours.yaml:12: train.lr: expected a number, got 'fast'``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from affbench.yaml_strict import load_unique

OVERRIDE_SOURCE = "<override>"
DEFAULT_SOURCE = "<default>"


class ConfigError(ValueError):
    """A configuration that cannot be used: names the file, the key path and what would be accepted."""


# -- schema: one dataclass per section -------------------------------------------------------------------------
#
# A section is a dataclass whose fields are its keys: the annotation says which values are accepted, the field's
# default is the key's default, and `setting` adds the one-line meaning, the accepted choices and, for a
# component, the registry kind its names are looked up in. A field whose type is a section dataclass is a nested
# section. The defaults are the paper's stage-3 hyperparameters where the paper gives one; changing one changes
# the digest of every config that relies on it (and so the published results' record).


class Component(dict):
    """A registered component, ``{name, options}``; a bare name is accepted and normalised to that form."""


class ComponentList(list):
    """A list of components (each a name or ``{name, options}``)."""


# Annotation -> the name the validator and the schema reference use for it.
_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "mapping",
               type(None): "null", Component: "component", ComponentList: "components"}


def setting(default: Any, doc: str, *, choices: tuple | None = None, kind: str | None = None) -> Any:
    """A section key: its default (copied afresh for every instance), meaning, choices and registry kind."""
    return field(default_factory=lambda: copy.deepcopy(default),
                 metadata={"default": default, "doc": doc, "choices": choices, "kind": kind})


@dataclass(frozen=True)
class Key:
    """One leaf of the schema as the validator reads it: accepted types, default, choices and meaning."""

    types: tuple[str, ...]  # of "int", "float", "bool", "str", "list", "mapping", "null", "component", "components"
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    kind: str | None = None  # registry kind for "component"/"components" keys


# train.select: the split that picks the reported epoch (and tunes AU thresholds), or none.
SELECT_MODES = ("inner", "last", "validation")
# eval.scoring: every labelled frame once (ABAW), or the frames of full windows, each as often as windows hold it.
SCORING_RULES = ("frames", "windows")


@dataclass
class DataSection:
    dataset: Component = setting({"name": "synthaffect", "options": {}}, "dataset plugin: a name or {name, options}",
                                 kind="dataset")
    window: int = setting(300, "frames per window (stage 3)")
    stride: int = setting(200, "frames between window starts (stage 3)")
    tails: str = setting("cover", "training windows: cover (every frame; the last window aligned to the end, a "
                         "short video padded) or drop (the authors' earlier loop: full windows only, so each video's "
                         "tail and videos shorter than the window are never trained on); scored splits always cover",
                         choices=("cover", "drop"))
    missing_faces: str = setting("mask", "features of frames without a face image",
                                 choices=("mask", "ffill", "zeros", "interpolate"))
    folds: int = setting(5, "K of K-fold cross-validation over train+validation, grouped by source video")
    fold_seed: int = setting(0, "seed of the fold split")


@dataclass
class AugmentSection:
    flip: bool = setting(False, "stage 1: mirror each training image left-right with probability 0.5")
    shift: float = setting(0.0, "stage 1: move each training image by up to this fraction of its size, "
                           "horizontally and vertically (edges repeated)")
    lighting: float = setting(0.0, "stage 1: change each training image's contrast and brightness by up to "
                              "this amount (x * (1 + c) + b, c and b uniform in [-lighting, lighting])")


@dataclass
class FinetuneSection:
    enabled: bool = setting(True, "stage 1: fine-tune the backbone on frame labels before extracting")
    tasks: ComponentList | None = setting(None, "stage 1 labels: the tasks whose heads are fine-tuned together "
                                          "(null: the row's own task; [expr]: the paper's one fine-tune on expression "
                                          "labels; [va, expr, au]: one multi-task fine-tune that rows of every task "
                                          "share)", kind="task")
    epochs: int = setting(1, "stage 1 epochs")
    batch_size: int = setting(256, "stage 1 batch size")
    lr: float = setting(1.0e-4, "stage 1 AdamW learning rate")
    weight_decay: float = setting(0.05, "stage 1 AdamW weight decay")
    max_frames: int | None = setting(None, "cap on stage 1 training frames per epoch (null: all)")
    workers: int = setting(2, "stage 1 data-loader workers")
    seed: int = setting(0, "stage 1 seed")
    batchnorm: str = setting("train", "stage 1 BatchNorm layers of the backbone: frozen (eval mode: the "
                             "pretrained running statistics are kept, affine parameters still trained) or train "
                             "(running statistics re-estimated from the fine-tuning batches)",
                             choices=("frozen", "train"))
    augment: AugmentSection = field(default_factory=AugmentSection)


@dataclass
class ExtractSection:
    batch_size: int = setting(64, "stage 2 batch size")
    workers: int = setting(2, "stage 2 data-loader workers")
    amp: bool = setting(True, "stage 2 autocast on GPU")


@dataclass
class HeadSection:
    hidden: int | None = setting(256, "MLP head hidden width (null: a single linear layer)")
    dropout: float = setting(0.3, "MLP head dropout")
    norm: str = setting("batch", "MLP head normalisation (batch: mask-aware BatchNorm, as the paper)",
                        choices=("batch", "layer", "none"))
    activation: str = setting("relu", "MLP head activation after the normalisation (none: the authors' "
                              "earlier code, Linear -> BatchNorm -> Linear)", choices=("relu", "none"))


@dataclass
class ModelSection:
    temporal: ComponentList = setting([
        {"name": "tcn", "options": {"channels": [768, 256, 128], "kernel_size": 5, "dropout": 0.3,
                                    "weight_norm": True}},
        {"name": "transformer", "options": {"d_model": 512, "heads": 4, "layers": 8, "ff_dim": 512,
                                            "dropout": 0.3, "positions": "none"}},
    ], "temporal stack, applied in order: list of names or {name, options} (empty: per-frame model)",
        kind="temporal")
    head: HeadSection = field(default_factory=HeadSection)


@dataclass
class TrainSection:
    epochs: int = setting(20, "stage 3 epochs")
    batch_size: int = setting(32, "stage 3 windows per batch (per process under DDP)")
    lr: float = setting(3.0e-5, "stage 3 AdamW peak learning rate")
    weight_decay: float = setting(1.0e-5, "stage 3 AdamW weight decay")
    warmup_epochs: float = setting(1.0, "linear warm-up length in epochs")
    schedule: str = setting("cosine", "learning-rate schedule after warm-up", choices=("cosine", "linear", "constant"))
    early_stopping: int | None = setting(None, "stop after this many epochs without a better metric on the split "
                                         "that train.select scores (not with select: last)")
    amp: str = setting("bf16", "autocast dtype on GPU (ignored on CPU)", choices=("bf16", "fp16", "none"))
    grad_clip: float | None = setting(None, "clip the gradient norm to this value (null: no clipping)")
    seed: int = setting(0, "seed of weights, data order, dropout")
    workers: int = setting(0, "stage 3 data-loader workers per process")
    threads: int | None = setting(None, "CPU threads for torch in stage 3 (null: torch's default); tiny models "
                                  "run fastest with 1")
    checkpoint_every: int | None = setting(None, "also save last.pt every N optimizer steps (null: per epoch)")
    resampled_len: int | None = setting(None, "batches per process per epoch, shards drawn with replacement (null: "
                                        "one pass over the shards)")
    select: str = setting("inner", "which epoch is reported (best.pt): inner = best on a held-out slice of the "
                          "fold's training videos (validation scored once, at the end); last = the last epoch; "
                          "validation = best on the validation split itself (the paper's practice: optimistic)",
                          choices=SELECT_MODES)
    select_fraction: float = setting(0.2, "select: inner: share of the training frames held out of stage 3 to "
                                     "pick the epoch (whole source videos, _left/_right together)")
    select_seed: int = setting(0, "select: inner: seed of the draw of the held-out training videos")


@dataclass
class EvalSection:
    smoothing: int | None = setting(None, "temporal smoothing window in frames (EXPR mode filter, VA moving "
                                    "average, AU moving average of probabilities); null: none")
    tune_thresholds: bool = setting(False, "AU: tune per-AU thresholds on the split that train.select scores "
                                    "(the held-out training videos under inner; not with select: last)")
    batch_size: int = setting(64, "windows per batch when predicting")
    scoring: str = setting("frames", "which frames the reported metrics count: frames = every labelled frame "
                           "once (ABAW); windows = the authors' earlier code, the frames of the full windows of "
                           "data.window every data.stride (tails dropped, as data.tails: drop), each as often as "
                           "windows hold it, from the merged per-frame predictions", choices=SCORING_RULES)


@dataclass
class RunConfig:
    """Every key of a run config, section by section (see the README's configuration reference)."""

    name: str | None = setting(None, "row name (default: the config file's stem); names the run directory")
    task: Component = setting(None, "task: a name (va | expr | au) or {name, options}; multitask joins tasks in "
                              "one model: {name: multitask, options: {tasks: [{name, weight, options}, ...]}}",
                              kind="task")
    feature_dim: int | None = setting(None, "input feature size when the model has no backbone (set by the "
                                      "trainer)")
    device: str = setting("auto", "where the models run: auto (the GPU when one is visible), cpu, cuda or cuda:N; "
                                  "--device overrides it")
    compile: bool = setting(False, "torch.compile the backbone in stages 1-2 (fine-tune and extraction); the first "
                            "batches pay the compilation. Recorded in provenance, not in cache keys (like device, it "
                            "moves results by float rounding only)")
    data: DataSection = field(default_factory=DataSection)
    backbone: Component | None = setting({"name": "clip", "options": {"arch": "ViT-B-16-quickgelu",
                                                                     "pretrained": "openai"}},
                                         "image backbone: a name or {name, options}", kind="backbone")
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    extract: ExtractSection = field(default_factory=ExtractSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)


def _type_names(annotation: Any) -> tuple[str, ...]:
    """("int", "null") of ``int | None``: the accepted value types of a key, in the order written."""
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return tuple(_TYPE_NAMES[member] for member in members)


def _schema_of(section: type) -> dict[str, Any]:
    """The validator's view of a section dataclass: key -> Key, or -> a nested dict for a nested section."""
    hints = typing.get_type_hints(section)
    out: dict[str, Any] = {}
    for item in fields(section):
        annotation = hints[item.name]
        if is_dataclass(annotation):
            out[item.name] = _schema_of(annotation)
            continue
        meta = item.metadata
        out[item.name] = Key(_type_names(annotation), meta["default"], meta["doc"], meta["choices"], meta["kind"])
    return out


SCHEMA: dict[str, Any] = _schema_of(RunConfig)


# -- the Config object ----------------------------------------------------------------------------------------


class Config(dict):
    """A resolved configuration: a plain nested dict plus ``source`` (key path -> "file:line" that set it)."""

    def __init__(self, data: Mapping[str, Any] = (), *, source: dict[str, str] | None = None,
                 path: str | None = None) -> None:
        super().__init__(data)
        self.source: dict[str, str] = dict(source or {})
        self.path = path

    def get_path(self, dotted: str, default: Any = None) -> Any:
        """The value at a dotted key path such as ``train.lr``."""
        node: Any = self
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def where(self, dotted: str) -> str:
        """The file (and line) that set `dotted`, or the nearest enclosing key that has one."""
        return _where(self.source, dotted)

    def to_dict(self) -> dict[str, Any]:
        """A deep plain-dict copy (what gets dumped and hashed)."""
        return copy.deepcopy(dict(self))

    def __deepcopy__(self, memo: dict) -> Config:
        return Config(copy.deepcopy(dict(self), memo), source=dict(self.source), path=self.path)

    def __reduce__(self):  # picklable for torch.multiprocessing spawn
        return (_rebuild_config, (dict(self), self.source, self.path))


def _rebuild_config(data: dict, source: dict, path: str | None) -> Config:
    return Config(data, source=source, path=path)


def _where(source: Mapping[str, str], dotted: str) -> str:
    key = dotted
    while key:
        if key in source:
            return source[key]
        key = key.rsplit(".", 1)[0] if "." in key else ""
    return source.get("", DEFAULT_SOURCE)


# -- YAML reading with key lines ------------------------------------------------------------------------------


def _key_lines(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            out[path] = key_node.start_mark.line + 1
            _key_lines(value_node, path, out)


def _read_yaml(path: Path, included_from: str | None) -> tuple[dict[str, Any], dict[str, int]]:
    where = f"{included_from}: include" if included_from else "config"
    if not path.is_file():
        raise ConfigError(f"{where}: file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = load_unique(text, str(path))
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValueError as exc:  # a duplicate key
        raise ConfigError(str(exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    lines: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", lines)
    return data, lines


def _merge(base: dict[str, Any], base_src: dict[str, str], top: Mapping[str, Any], top_src: Mapping[str, str],
           prefix: str = "") -> None:
    """Merge `top` into `base` in place with the documented rule, carrying the source of every key."""
    for key, value in top.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and not _other_component(base[key], value):
            if path in top_src:
                base_src.setdefault(path, top_src[path])
            _merge(base[key], base_src, value, top_src, path)
            continue
        # Replace whole: forget what the earlier file said below this key.
        for old in [p for p in base_src if p == path or p.startswith(path + ".")]:
            del base_src[old]
        base[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
        for p, s in top_src.items():
            if p == path or p.startswith(path + "."):
                base_src[p] = s


def _other_component(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `new` names a different component than `old` (then it replaces it whole, options included)."""
    return "name" in new and "name" in old and new["name"] != old["name"] and (
        isinstance(old.get("options", {}), Mapping) or isinstance(new.get("options", {}), Mapping))


def _load_tree(path: Path, stack: tuple[Path, ...], included_from: str | None) -> tuple[dict, dict[str, str]]:
    path = path.resolve() if path.exists() else path
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"{included_from}: include: include cycle: {chain}")
    data, lines = _read_yaml(path, included_from)
    includes = data.pop("include", None)
    if includes is None:
        includes = []
    elif isinstance(includes, str):
        includes = [includes]
    elif not (isinstance(includes, list) and all(isinstance(i, str) for i in includes)):
        raise ConfigError(f"{path}:{lines.get('include', '?')}: include: expected a path or a list of paths, "
                          f"got {includes!r}")
    merged: dict[str, Any] = {}
    merged_src: dict[str, str] = {}
    for inc in includes:
        inc_path = (path.parent / inc)
        here = f"{path}:{lines.get('include', '?')}"
        if not inc_path.is_file():  # a built-in config name, as every command accepts
            inc_path = builtin_config(inc) or inc_path
        if not inc_path.is_file():
            raise ConfigError(f"{here}: include: file not found: {inc!r} (looked for {path.parent / inc} and "
                              f"the built-in config '{inc}')")
        sub, sub_src = _load_tree(inc_path, (*stack, path), here)
        _merge(merged, merged_src, sub, sub_src)
    own_src = {p: f"{path}:{line}" for p, line in lines.items() if p != "include" and
               not p.startswith("include.")}
    _merge(merged, merged_src, data, own_src)
    return merged, merged_src


def _nest_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-3}`` and ``{"train": {"lr": 1e-3}}`` both become nested mappings."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{OVERRIDE_SOURCE}: {key}: conflicts with another override of '{part}'")
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            tmp_src: dict[str, str] = {}
            _merge(node[parts[-1]], tmp_src, value, {})
        else:
            node[parts[-1]] = value
    return nested


def _all_paths(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.append(path)
        if isinstance(value, Mapping):
            out.extend(_all_paths(value, path))
    return out


# -- validation -----------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(value: Any, key: Key, path: str, where: str) -> Any:
    """The value checked against (and, for YAML's exponent quirk, coerced to) the key's types."""
    types = key.types
    if value is None:
        if "null" in types:
            return None
        raise ConfigError(f"{where}: {path}: may not be null; expected {' or '.join(types)}")
    if "component" in types:
        return component_spec(value, path, kind=key.kind, where=where)
    if "components" in types:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {path}: expected a list of components, got {_type_name(value)}")
        return [component_spec(v, f"{path}[{i}]", kind=key.kind, where=where) for i, v in enumerate(value)]
    if "bool" in types and isinstance(value, bool):
        return value
    if "int" in types and isinstance(value, int) and not isinstance(value, bool):
        out: Any = value
    elif "float" in types and isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif "float" in types and isinstance(value, str):
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept any string Python reads as a number.
        try:
            out = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {path}: expected a number, got {value!r}") from None
    elif "str" in types and isinstance(value, str):
        out = value
    elif "list" in types and isinstance(value, list):
        out = value
    elif "mapping" in types and isinstance(value, Mapping):
        out = dict(value)
    else:
        expected = " or ".join("number" if t == "float" else t for t in types)
        raise ConfigError(f"{where}: {path}: expected {expected}, got {_type_name(value)} {value!r}")
    if isinstance(out, float) and not math.isfinite(out):
        raise ConfigError(f"{where}: {path}: expected a finite number, got {value!r}")
    if key.choices is not None and out not in key.choices:
        hint = difflib.get_close_matches(str(out), [str(c) for c in key.choices], n=1)
        msg = f"{where}: {path}: {out!r} is not one of {', '.join(map(str, key.choices))}"
        raise ConfigError(msg + (f". Did you mean '{hint[0]}'?" if hint else ""))
    return out


def component_spec(value: Any, path: str, *, kind: str, where: str = "config key") -> dict[str, Any]:
    """A component (a name or {name, options}) as {name, options}: the one normaliser, run when a config loads
    (and by ``create_model`` on a plain mapping), so that code downstream indexes ``["name"]`` and
    ``["options"]``. A ConfigError names `where` and `path` otherwise."""
    if isinstance(value, str):
        return {"name": value, "options": {}}
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"name", "options"})
        if extra:
            raise ConfigError(f"{where}: {path}: unknown key '{extra[0]}' in a component; accepted: name, options")
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: {path}.name: expected a component name (string), got {name!r}")
        options = value.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}: {path}.options: expected a mapping, got {_type_name(options)}")
        return {"name": name, "options": dict(options)}
    raise ConfigError(f"{where}: {path}: expected a {kind} name or {{name, options}}, got {_type_name(value)}")


def _hint(key: str, choices: list[str]) -> list[str]:
    """The accepted key the user most likely meant: one that contains it (warmup -> warmup_epochs), else difflib."""
    containing = [c for c in choices if key and (c.startswith(key) or key in c)]
    return containing[:1] or difflib.get_close_matches(key, choices, n=1)


def _validate_section(data: Mapping[str, Any], schema: Mapping[str, Any], source: Mapping[str, str],
                      prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in data:
        if key not in schema:
            path = f"{prefix}.{key}" if prefix else str(key)
            hint = _hint(str(key), list(schema))
            accepted = ", ".join(schema)
            msg = f"{_where(source, path)}: {path}: unknown key; accepted keys{' in ' + prefix if prefix else ''}: " \
                  f"{accepted}"
            raise ConfigError(msg + (f". Did you mean '{hint[0]}'?" if hint else ""))
    for key, spec in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict):
            value = data.get(key, {})
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{_where(source, path)}: {path}: expected a mapping of keys "
                                  f"({', '.join(spec)}), got {_type_name(value)}")
            out[key] = _validate_section(value, spec, source, path)
        else:
            value = data[key] if key in data else copy.deepcopy(spec.default)
            out[key] = _coerce(value, spec, path, _where(source, path))
    return out


def _component_keys(schema: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Key]]:
    out = []
    for key, spec in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict):
            out.extend(_component_keys(spec, path))
        elif spec.kind:
            out.append((path, spec))
    return out


def _check_components(config: Config) -> None:
    """Unknown component names and unknown options fail, naming the file and the key."""
    from affbench.core.registry import UnknownComponentError, get_registry, unknown_option

    registry = get_registry()
    for path, spec in _component_keys(SCHEMA):
        value = config.get_path(path)
        if value is None:
            continue
        items = [(path, value)] if isinstance(value, dict) else [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        for item_path, comp in items:
            where = config.where(path)
            try:
                component = registry.get(spec.kind, comp["name"])
            except UnknownComponentError as exc:
                raise ConfigError(f"{where}: {item_path}.name: {exc}") from None
            for option in comp["options"]:  # one at a time: the message names the line of the one at fault
                problem = unknown_option(component, [option],
                                         set_by_caller=("in_dim",) if spec.kind == "temporal" else ())
                at = config.where(f"{path}.options.{option}") if isinstance(value, dict) else where
                if problem is not None:
                    raise ConfigError(f"{at}: {item_path}.options.{option}: {spec.kind} '{comp['name']}' {problem}")
                _check_option_value(component, f"{item_path}.options.{option}", comp["options"][option], at)


def _check_option_value(component: Any, path: str, value: Any, where: str) -> None:
    """A component's own check of one option's value, when its factory declares one (``factory.check_option(path,
    value)`` raising ValueError with a message that names `path`), so a bad value fails on load at its line."""
    check = getattr(component.factory, "check_option", None)
    if check is None:
        return
    try:
        check(path, value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_values(config: Config) -> None:
    def positive(path: str, allow_zero: bool = False) -> None:
        value = config.get_path(path)
        if value is None:
            return
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{config.where(path)}: {path}: must be {'>= 0' if allow_zero else '> 0'}, "
                              f"got {value}")

    for path in ("train.epochs", "data.folds", "finetune.batch_size", "extract.batch_size",
                 "train.batch_size", "eval.batch_size", "train.checkpoint_every", "train.resampled_len", "train.threads",
                 "train.early_stopping", "eval.smoothing"):
        positive(path)
    for path in ("finetune.epochs", "train.lr", "train.weight_decay", "train.warmup_epochs",
                 "train.workers", "finetune.workers", "extract.workers", "model.head.dropout"):
        positive(path, allow_zero=True)
    _check_dropouts(config)
    _check_augment(config)
    _check_device(config)
    _check_windowing(config)
    fraction = config["train"]["select_fraction"]
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"{config.where('train.select_fraction')}: train.select_fraction: must be between 0 and 1 "
                          f"(exclusive), got {fraction}")
    if config["train"]["select"] == "last":
        for path in ("train.early_stopping", "eval.tune_thresholds"):
            if config.get_path(path):
                raise ConfigError(f"{config.where(path)}: {path}: needs a split to score each epoch on, but "
                                  "train.select is 'last'; use train.select inner (or validation)")
    if config["task"] is None:
        raise ConfigError(f"{config.where('task')}: task: required; one of va, expr, au (or {{name, options}})")


def _check_augment(config: Config) -> None:
    """Stage 1 augmentation strengths lie in [0, 0.5): a larger shift or lighting change destroys the face."""
    for key in ("shift", "lighting"):
        path = f"finetune.augment.{key}"
        value = config["finetune"]["augment"][key]
        if not 0 <= value < 0.5:
            raise ConfigError(f"{config.where(path)}: {path}: must lie in [0, 0.5), got {value}")


def _check_windowing(config: Config) -> None:
    """data.window and data.stride, by the rule of the module that cuts windows, reported at the line that set
    the key at fault."""
    from affbench.data.windows import check_window_stride

    try:
        check_window_stride(config["data"]["window"], config["data"]["stride"])
    except ValueError as exc:
        key = "data.window" if str(exc).startswith("window") else "data.stride"
        raise ConfigError(f"{config.where(key)}: {key}: {exc}") from None


def _check_device(config: Config) -> None:
    from affbench.devices import DeviceError, check_device

    try:
        check_device(config["device"], where=f"{config.where('device')}: device")
    except DeviceError as exc:
        raise ConfigError(str(exc)) from None


def _check_dropouts(config: Config) -> None:
    """Dropout probabilities (the head's and any temporal block's `dropout` option) lie in [0, 1)."""
    rates = [("model.head.dropout", config["model"]["head"]["dropout"])]
    rates += [(f"model.temporal[{i}].options.dropout", block["options"]["dropout"])
              for i, block in enumerate(config["model"]["temporal"]) if "dropout" in block["options"]]
    for path, rate in rates:
        ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate < 1
        if not ok:
            raise ConfigError(f"{config.where(path.split('[')[0])}: {path}: a dropout probability must lie in "
                              f"[0, 1), got {rate!r}")


def resolve(data: Mapping[str, Any], *, source: Mapping[str, str] | None = None, path: str | None = None,
            check_components: bool = True) -> Config:
    """Validate a raw (merged) mapping against the schema and fill defaults; returns a :class:`Config`."""
    if isinstance(data, Config) and source is None:
        source, path = data.source, path or data.path
    src = dict(source or {})
    if "" not in src:
        src[""] = str(path) if path else "<config>"
    raw = copy.deepcopy(dict(data))
    resolved = _validate_section(raw, SCHEMA, src, "")
    if resolved["name"] is None:
        resolved["name"] = Path(path).stem if path else "run"
    config = Config(resolved, source=src, path=path)
    _check_values(config)
    if check_components:
        _check_components(config)
    return config


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None, *,
                check_components: bool = True) -> Config:
    """Load a YAML config with its includes, apply `overrides` (dotted or nested keys), validate, fill defaults."""
    path = Path(path)
    merged, src = _load_tree(path, (), None)
    if overrides:
        nested = _nest_overrides(overrides)
        _merge(merged, src, nested, {p: OVERRIDE_SOURCE for p in _all_paths(nested)})
    src[""] = str(path)
    return resolve(merged, source=src, path=str(path), check_components=check_components)


def builtin_configs_root() -> Path:
    """The folder of the built-in configs (the installed package, else the source tree's configs/)."""
    try:
        import affbench_configs

        return Path(affbench_configs.__file__).parent
    except ImportError:  # a source tree without the installed package
        return Path(__file__).resolve().parents[2] / "configs"


def builtin_config(name: str | Path) -> Path | None:
    """The built-in config `name` (e.g. ``synthaffect/va/ours``, ``.yaml`` optional), or None."""
    root = builtin_configs_root()
    for candidate in (root / str(name), root / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    return None


def builtin_config_names() -> list[str]:
    """Every built-in config name (path under the configs folder without ``.yaml``), suites excluded."""
    root = builtin_configs_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
                  if p.name not in ("suite.yaml", "scale.yaml"))


def find_config(name: str | Path) -> Path:
    """A config path: an existing file, or a built-in config such as ``synthaffect/va/ours`` (``.yaml`` optional)."""
    path = Path(name)
    if path.is_file():
        return path
    found = builtin_config(name)
    if found is not None:
        return found
    hint = difflib.get_close_matches(str(name).removesuffix(".yaml"), builtin_config_names(), n=1, cutoff=0.6)
    raise ConfigError(f"config not found: {name} (neither a file nor a built-in config under "
                      f"{builtin_configs_root()}, named like synthaffect/va/ours)"
                      + (f". Did you mean '{hint[0]}'?" if hint else ""))


def as_config(config: Config | Mapping[str, Any] | str | Path) -> Config:
    """A Config from a path, a raw mapping or an already-resolved Config (returned as is)."""
    if isinstance(config, Config):
        return config
    if isinstance(config, (str, Path)):
        return load_config(find_config(config))
    return resolve(config)


def to_yaml(config: Mapping[str, Any]) -> str:
    """The config as YAML text, keys in schema order."""
    plain = json.loads(json.dumps(dict(config)))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None, width=110)


def dump_resolved(config: Config | Mapping[str, Any], path: str | Path) -> Path:
    """Write the resolved config (every key, defaults included) as YAML, headed by the files it came from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = sorted({s.rsplit(":", 1)[0] for s in getattr(config, "source", {}).values()
                    if s and not s.startswith("<")} | ({str(config.path)} if getattr(config, "path", None)
                                                         else set()))
    header = "# affbench resolved config (every key; defaults filled in)\n"
    header += "".join(f"# from: {f}\n" for f in files)
    from affbench.output import write_text_atomic

    return write_text_atomic(path, header + to_yaml(config))


def config_digest(config: Mapping[str, Any], sections: tuple[str, ...] | None = None) -> str:
    """A stable sha256 of the config (or of some top-level sections), for cache keys and provenance."""
    plain = json.loads(json.dumps(dict(config)))
    if sections is not None:
        plain = {k: plain.get(k) for k in sections}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def schema_reference() -> list[tuple[str, str, Any, str]]:
    """(key path, types, default, meaning) for every key of the schema, for documentation."""
    rows: list[tuple[str, str, Any, str]] = []

    def walk(schema: Mapping[str, Any], prefix: str) -> None:
        for key, spec in schema.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(spec, dict):
                walk(spec, path)
            else:
                types = "|".join(spec.types)
                if spec.choices:
                    types = " | ".join(map(str, spec.choices))
                rows.append((path, types, spec.default, spec.doc))

    walk(SCHEMA, "")
    return rows
