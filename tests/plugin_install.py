"""Installing a third-party plugin package into a folder the way pip lays it out: its modules, and a dist-info
with its name, version and ``affbench`` entry points (what affbench's plugin loader reads)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path


def install_package(site: Path, project: Mapping, files: Mapping[str, str]) -> Path:
    """Write `files` (path inside the package root -> text) and the dist-info of `project` (pyproject's
    ``[project]`` table) into `site`, to be put on sys.path; returns `site`."""
    for relative, text in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    info = site / f"{re.sub(r'[-.]+', '_', project['name'])}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = "\n".join(f"{k} = {v}" for k, v in project["entry-points"]["affbench"].items())
    (info / "entry_points.txt").write_text(f"[affbench]\n{entry_points}\n")
    return site
