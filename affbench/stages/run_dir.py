"""The run directory: everything needed to know what a run was, next to what it produced.

``<out>/<task>/<row name>/fold<k>/`` (``official/`` for the official train/validation split) holds
``config.resolved.yaml`` (every key, defaults filled in), ``plugins.json`` (every loaded plugin and the
components this run used, with versions), ``seed``, ``fold_manifest.json`` (which videos were trained and
validated on), ``data_provenance.json``, ``metrics.csv`` (one row per epoch), ``metrics.json`` (final
validation metrics) and the ``best.pt`` / ``last.pt`` checkpoints.
"""

from __future__ import annotations

import csv
import io
import platform
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affbench.core.config import Config, dump_resolved
from affbench.output import write_json, write_text_atomic


def run_dir_path(out: str | Path, config: Mapping[str, Any], fold: int | None) -> Path:
    """``<out>/<task>/<row name>/fold<k>`` (or ``official`` when `fold` is None)."""
    task = config["task"]["name"] if isinstance(config["task"], Mapping) else str(config["task"])
    return Path(out) / task / str(config["name"]) / (f"fold{fold}" if fold is not None else "official")


def plugin_versions(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Loaded plugins with versions, and which plugin provided each component the config names."""
    import affbench
    from affbench.core.registry import get_registry

    registry = get_registry()
    plugins = [
        {"name": p.name, "module": p.module, "version": p.version, "builtin": p.builtin,
         **({"error": p.error} if p.error else {})}
        for p in registry.plugins()
    ]
    used: list[dict[str, str]] = []
    if config is not None:
        wanted: list[tuple[str, str]] = []
        if config.get("task"):
            wanted.append(("task", config["task"]["name"]))
        if config.get("backbone"):
            wanted.append(("backbone", config["backbone"]["name"]))
        wanted.append(("dataset", config["data"]["dataset"]["name"]))
        wanted += [("temporal", t["name"]) for t in config["model"]["temporal"]]
        for kind, name in wanted:
            try:
                comp = registry.get(kind, name)
            except Exception:  # recorded as unknown rather than failing the run's bookkeeping
                used.append({"kind": kind, "name": name, "plugin": "?", "version": "?"})
                continue
            used.append({"kind": kind, "name": name, "plugin": comp.plugin, "version": comp.version})
    import numpy
    import torch

    return {
        "affbench": affbench.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "plugins": plugins,
        "components": used,
    }


def prepare_run_dir(run_dir: str | Path, config: Config, *, seed: int, fold: int | None,
                    fold_manifest: str | Path | Mapping | None = None,
                    provenance: Mapping[str, Any] | None = None) -> Path:
    """Create `run_dir` and write the resolved config, plugin versions, seed, fold manifest and provenance."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_resolved(config, run_dir / "config.resolved.yaml")
    write_json(run_dir / "plugins.json", plugin_versions(config))
    write_text_atomic(run_dir / "seed", f"{int(seed)}\n")
    if fold_manifest is not None:
        if isinstance(fold_manifest, Mapping):
            write_json(run_dir / "fold_manifest.json", {"fold": fold, **dict(fold_manifest)})
        elif Path(fold_manifest).resolve() != (run_dir / "fold_manifest.json").resolve():
            shutil.copyfile(fold_manifest, run_dir / "fold_manifest.json")
    if provenance is not None:
        write_json(run_dir / "data_provenance.json", dict(provenance))
    return run_dir


def write_metrics_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Rewrite the per-epoch metrics log from the full history (a resumed run never duplicates rows)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text_atomic(path, buffer.getvalue())
